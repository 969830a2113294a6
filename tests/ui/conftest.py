"""Fixtures of the Control Center's browser tests: one seeded TEA (auth on) per module, Debian's Chromium
driven by Playwright, pages that record console errors and every request, and the screenshot folder."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from tea.app import TeaApp
from tests.conftest import LiveServer, make_settings
from tests.services import require
from tests.ui import seed

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
ADMIN = "ui-admin-" + "u" * 32
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


class Site:
    """The seeded TEA: its URL, the admin token, acme's API token, what the seed sent."""

    def __init__(self, live: LiveServer) -> None:
        self.live = live
        self.url = live.url
        self.host = urlsplit(live.url).netloc
        with httpx.Client(base_url=live.url, headers={"authorization": f"Bearer {ADMIN}"}) as c:
            r = c.post("/v1/tokens", json={"tenant_id": "acme", "tier": "enterprise"})
            assert r.status_code == 201, r.text
        self.acme = r.json()["token"]
        self.sent = seed.seed(live.url, "acme", {"authorization": f"Bearer {self.acme}"})
        live.wait_stored(len(self.sent["events"]) + len(self.sent["communications"]) + len(seed.SPANS) + 2)

    def session_cookie(self, token: str) -> dict[str, Any]:
        """Sign in through the form (as a browser would) and hand back the session cookie for a context."""
        with httpx.Client(base_url=self.url, follow_redirects=False) as c:
            form = c.get("/ui/login")
            csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
            r = c.post("/ui/login", data={"token": token, "csrf": csrf, "next": "/ui"})
            assert r.status_code == 303, r.text
            value = c.cookies["tea_session"]
        return {"name": "tea_session", "value": value, "url": self.url, "httpOnly": True, "sameSite": "Strict"}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    settings = make_settings(tmp_path_factory.mktemp("ui") / "data", storage_backend="duckdb", auth_validation=True,
                             admin_token=ADMIN, writer__flush_interval_ms=20.0, shutdown_timeout_s=5.0,
                             alerts__interval_s=0.5)
    live = LiveServer(TeaApp(settings)).start()
    try:
        yield Site(live)
    finally:
        live.stop()


@pytest.fixture(scope="package")
def chromium() -> Iterator[Any]:
    require(CHROMIUM if os.path.exists(CHROMIUM) else None, "chromium")
    from playwright.sync_api import sync_playwright  # (the test extra)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the tests save a screenshot of each page: $TEA_UI_SCREENSHOTS, else a temporary folder."""
    folder = os.environ.get("TEA_UI_SCREENSHOTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("ui-screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


class Watched:
    """A page that records console errors, uncaught exceptions and the host of every request."""

    def __init__(self, context: Any, site: Site) -> None:
        self.context = context
        self.page = context.new_page()
        self.errors: list[str] = []
        self.foreign: list[str] = []
        self.page.on("console", lambda m: self.errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        self.page.on("request", self._request)
        self.host = site.host
        self.url = site.url

    def _request(self, request: Any) -> None:
        parts = urlsplit(request.url)
        if parts.scheme not in ("data", "blob", "about") and parts.netloc != self.host:
            self.foreign.append(request.url)

    def open(self, path: str) -> Any:
        self.page.goto(self.url + path)
        self.loaded()
        return self.page

    def loaded(self) -> None:
        """Wait until the page's loader finished (the body says so)."""
        self.page.wait_for_selector("body[data-loaded='true']", state="attached", timeout=15000)

    def clean(self) -> None:
        assert self.errors == [], self.errors
        assert self.foreign == [], self.foreign


@pytest.fixture
def browse(chromium: Any, site: Site) -> Iterator[Any]:
    """``browse(token=None, viewport=DESKTOP)``: a fresh browser context (signed in with ``token``)."""
    contexts: list[Any] = []

    def make(token: str | None = None, viewport: dict[str, int] = DESKTOP) -> Watched:
        context = chromium.new_context(viewport=viewport)
        contexts.append(context)
        if token is not None:
            context.add_cookies([site.session_cookie(token)])
        return Watched(context, site)

    yield make
    for context in contexts:
        context.close()
