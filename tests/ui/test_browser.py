"""The Control Center in a real browser (Debian's Chromium through Playwright), against a seeded TEA with
authentication on: every page loads without a console error or a request to another host (at 1280 px and at
a phone's width, a screenshot of each saved), the overview agrees with /v1/metrics, Live shows a new event,
the waterfall shows every span, the agents matrix shows a known pair, sign-in and sign-out, acknowledge."""
from __future__ import annotations

import time

import httpx
import pytest

from tests.ui import seed
from tests.ui.conftest import ADMIN, DESKTOP, PHONE

PAGES = ["/ui", "/ui/events", "/ui/traces", f"/ui/traces/{seed.TRACE_ID}", "/ui/agents", "/ui/registry",
         "/ui/alerts", "/ui/usage", "/ui/ops"]


def shot_name(path: str, viewport: dict[str, int]) -> str:
    name = "trace" if seed.TRACE_ID in path else path.rsplit("/", 1)[-1].replace("ui", "overview")
    return f"{name}-{viewport['width']}.png"


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1280px", "phone"])
@pytest.mark.parametrize("path", PAGES)
def test_every_page_loads_clean(browse, site, shots, path: str, viewport: dict[str, int]) -> None:
    watched = browse(ADMIN, viewport)
    page = watched.open(path + ("&" if "?" in path else "?") + "tenant=acme")
    assert page.locator("#status .error").count() == 0, page.locator("#status").inner_text()
    assert page.locator("#content > *").count() > 0
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= viewport["width"], f"{path} is {width} px wide at {viewport['width']} px"
    page.screenshot(path=str(shots / shot_name(path, viewport)), full_page=True)
    watched.clean()


@pytest.mark.parametrize("path", [p for p in PAGES if p != "/ui/ops"])
def test_a_tenant_sees_every_page(browse, site, path: str) -> None:
    watched = browse(site.acme)
    page = watched.open(path)
    assert page.locator("#status .error").count() == 0, page.locator("#status").inner_text()
    assert page.locator("#tenant-pick").is_hidden()  # a tenant's token reads its own tenant only
    watched.clean()


def test_ops_is_for_admins(browse, site) -> None:
    page = browse(site.acme).page
    response = page.goto(site.url + "/ui/ops")
    assert response.status == 403 and "admin" in page.inner_text("h1")


def test_the_overview_agrees_with_v1_metrics(browse, site) -> None:
    watched = browse(site.acme)
    page = watched.open("/ui")
    start, end = page.get_attribute("body", "data-start"), page.get_attribute("body", "data-end")
    shown = {k: int(page.get_attribute(f"#kpi-{k} .value", "data-value")) for k in ("requests", "errors")}
    metrics = httpx.get(site.url + "/v1/metrics", params={"start_time": start, "end_time": end, "granularity": "auto",
                                                          "metrics": "requests,errors"},
                        headers={"authorization": f"Bearer {site.acme}"}).json()
    points = metrics["series"][0]["points"]
    expected = {k: sum(p[k] for p in points) for k in ("requests", "errors")}
    assert shown == expected and expected["requests"] >= len(site.sent["events"])
    assert page.inner_text("#kpi-error-rate .value") == f"{100 * expected['errors'] / expected['requests']:.2f} %"
    assert page.get_attribute("#content", "data-granularity") == metrics["granularity"]
    # the charts: one bar per non-empty bucket, a line and markers per latency percentile, the data as a table
    assert page.locator("figure.chart").count() == 3
    assert page.locator("figure.chart svg[role=img] rect.s1").count() == sum(1 for p in points if p["requests"])
    assert page.locator("details.data table").count() == 3
    watched.clean()


def test_live_shows_a_new_event_within_two_seconds(browse, site) -> None:
    watched = browse(site.acme)
    page = watched.open("/ui/events")
    page.get_by_role("button", name="Live").click()
    page.wait_for_selector("body[data-live='on']", state="attached", timeout=5000)
    assert page.get_by_role("button", name="Live").get_attribute("aria-pressed") == "true"
    r = httpx.post(site.url + "/v1/events", json={"event_type": "live_test", "method": "appears-live"},
                   headers={"authorization": f"Bearer {site.acme}"})
    assert r.status_code == 200
    posted = time.monotonic()
    [event_id] = r.json()["event_ids"]
    row = page.wait_for_selector(f"#events-table tr[data-event-id='{event_id}']", timeout=2000)
    assert time.monotonic() - posted < 2.0
    assert "appears-live" in row.inner_text()
    row.click()  # its full detail
    page.wait_for_selector("#detail pre.json")
    assert event_id in page.inner_text("#detail")
    page.get_by_role("button", name="Live").click()
    assert page.get_attribute("body", "data-live") == "off"
    watched.clean()


def test_the_waterfall_shows_every_span(browse, site) -> None:
    watched = browse(site.acme)
    page = watched.open("/ui/traces")
    page.get_by_role("link", name="POST /api/orders").click()
    watched.loaded()
    assert page.url.endswith("/ui/traces/" + seed.TRACE_ID)
    rows = page.locator(".waterfall .wf-row")
    assert rows.count() == len(seed.SPANS)
    assert sorted(rows.nth(i).get_attribute("data-span-id") for i in range(rows.count())) == \
        sorted(span[0] for span in seed.SPANS)
    assert page.inner_text("#kpi-spans .value") == str(len(seed.SPANS))
    page.locator(".wf-row[data-span-id='a1b2c3d4e5f60718']").click()  # the failed SELECT, with its log
    detail = page.inner_text("#span-detail")
    assert "SELECT orders" in detail and "deadlock detected on orders" in detail and "error" in detail
    watched.clean()


def test_the_agents_matrix_shows_a_known_pair(browse, site) -> None:
    watched = browse(site.acme)
    page = watched.open("/ui/agents")
    source, target = seed.PAIR
    cell = page.locator(f"#matrix td[data-source='{source}'][data-target='{target}']")
    sent = sum(1 for c in site.sent["communications"] if (c["source_id"], c["target_id"]) == seed.PAIR)
    assert cell.count() == 1 and cell.inner_text().startswith(f"{sent} calls")
    watched.clean()


def test_sign_in_and_sign_out(browse, site) -> None:
    watched = browse()
    page = watched.page
    page.goto(site.url + "/ui/usage")
    assert "/ui/login?next=%2Fui%2Fusage" in page.url
    page.fill("#token", "tk_not_a_token")
    page.click("button[type=submit]")
    assert "not valid" in page.inner_text("p.error")
    watched.errors.clear()  # (the browser logs the 401 of the refused sign-in)
    page.fill("#token", site.acme)
    page.click("button[type=submit]")
    watched.loaded()
    assert page.url.endswith("/ui/usage") and "tenant acme" in page.inner_text(".who")
    [cookie] = [c for c in watched.context.cookies() if c["name"] == "tea_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/"
    assert page.locator("#csv").get_attribute("href").startswith("/v1/usage?")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/ui/login")
    assert not [c for c in watched.context.cookies() if c["name"] == "tea_session"]
    page.goto(site.url + "/ui")
    assert "/ui/login" in page.url
    watched.clean()


def test_an_alert_is_acknowledged_from_its_page(browse, site) -> None:
    watched = browse(site.acme)
    page = watched.open("/ui/alerts")
    deadline = time.monotonic() + 20  # the evaluator runs every 0.5 s here
    while page.get_by_role("button", name="Acknowledge").count() == 0:
        assert time.monotonic() < deadline, "the seed's rule never fired"
        page.click("#refresh")
        watched.loaded()
        time.sleep(0.2)
    before = page.get_by_role("button", name="Acknowledge").count()
    page.get_by_role("button", name="Acknowledge").first.click()
    deadline = time.monotonic() + 10
    while page.get_by_role("button", name="Acknowledge").count() != before - 1:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert "acknowledged" in page.inner_text("section[aria-label='Open alerts']")
    watched.clean()
