"""Control Center server time per page at 1 M events for one tenant's last 24 h: ``python -m bench.ui``.

Builds the data set (bench.dataset's generator: one tenant, the last 24 hours, a mix of MCP requests,
agent communications, trace spans and logs), starts ``tea serve`` on it, opens every page in Debian's
Chromium (Playwright, signed in as the admin with the tenant picked) to record the requests each page
really makes — the page itself and the JSON API calls its script sends — then replays each request
``--calls`` times, one at a time, and prints the median of each and their sum per page: the server time
a page costs when its requests run one after another (the browser runs up to six at once), and the CPU
time the server process spent on them (every thread, DuckDB's too: on a busy machine the wall time grows
with the queue for the cores, the CPU time much less). Results also go to bench/results/ui-<time>.json.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import tempfile
import time
from urllib.parse import urlsplit

import httpx
import psutil

from bench import dataset, report
from bench.server import ADMIN_TOKEN, free_port, tea_server

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
TENANT = "tenant-0"
TARGET_MS = 200.0
PAGES = ("/ui", "/ui/events", "/ui/traces", "/ui/traces/{trace_id}", "/ui/agents", "/ui/registry", "/ui/alerts",
         "/ui/usage", "/ui/ops")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
# the mix over bench.dataset's draws: u_type picks the kind; spans and logs of one 2-second window share a trace
COLUMNS = {
    "event_type": "CASE WHEN u_type < 0.55 THEN 'mcp_request' WHEN u_type < 0.80 THEN 'communication' "
                  "WHEN u_type < 0.95 THEN 'span' ELSE 'log' END",
    "protocol": "CASE WHEN u_type < 0.70 THEN 'mcp' WHEN u_type < 0.80 THEN 'a2a' END",
    "trace_id": "CASE WHEN u_type >= 0.80 THEN lower(lpad(to_hex(ts_us // 2000000), 32, '0')) END",
    "attributes": "CASE WHEN u_type >= 0.55 AND u_type < 0.80 THEN '{\"source_type\":\"agent\",\"target_type\":"
                  "\"mcp\"}' ELSE '{}' END",
}


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.ui", description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events of the tenant (default 1 000 000)")
    parser.add_argument("--calls", type=int, default=20, help="timed calls of each request (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls first (default 3)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--results-dir", default=RESULTS_DIR)
    return parser.parse_args(argv)


def build(work_dir: str, n: int, seed: int) -> str:
    data_dir = os.path.join(work_dir, "data")
    start_us = (time.time_ns() // 1000) - dataset.DAY_US
    sql = dataset.generate_sql(n, seed, start_us=start_us, tenants=1, columns=COLUMNS)
    started = time.perf_counter()
    rows = dataset._build(data_dir, n, seed, sql)
    print(f"built {rows:,} events of {TENANT} over the last 24 h in {time.perf_counter() - started:.1f} s")
    return data_dir


def sign_in(url: str) -> str:
    with httpx.Client(base_url=url, follow_redirects=False) as c:
        csrf = re.search(r'name="csrf" value="([^"]+)"', c.get("/ui/login").text).group(1)  # type: ignore[union-attr]
        r = c.post("/ui/login", data={"token": ADMIN_TOKEN, "csrf": csrf, "next": "/ui"})
        assert r.status_code == 303, r.text
        return c.cookies["tea_session"]


def page_requests(url: str, trace_id: str) -> dict[str, dict]:
    """Each page's requests to TEA (the page, then its API calls) and the browser's time to a loaded page."""
    from playwright.sync_api import sync_playwright

    cookie = {"name": "tea_session", "value": sign_in(url), "url": url}
    found: dict[str, dict] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.add_cookies([cookie])
        page = context.new_page()
        for template in PAGES:
            path = template.format(trace_id=trace_id) + f"?tenant={TENANT}"
            seen: list[str] = []
            listener = (lambda r: seen.append(r.url) if r.resource_type in ("document", "fetch", "xhr") else None)
            page.on("request", listener)
            started = time.perf_counter()
            page.goto(url + path)
            page.wait_for_selector("body[data-loaded='true']", state="attached", timeout=60_000)
            browser_ms = (time.perf_counter() - started) * 1000
            page.remove_listener("request", listener)
            assert page.locator("#status .error").count() == 0, (path, page.inner_text("#status"))
            found[template] = {"requests": [u[len(url):] for u in seen if urlsplit(u).netloc == urlsplit(url).netloc],
                               "browser_ms": browser_ms}
        browser.close()
    return found


def time_request(c: httpx.Client, server: psutil.Process, path: str, calls: int, warmup: int) -> dict:
    """Wall time over loopback and the server process's CPU time (every thread: DuckDB's too) per call.
    On a busy machine the wall time grows with the queue for the cores; the CPU time much less."""
    times, cpu = [], []
    for i in range(warmup + calls):
        before = sum(server.cpu_times()[:2])
        started = time.perf_counter()
        r = c.get(path)
        elapsed = (time.perf_counter() - started) * 1000
        used = (sum(server.cpu_times()[:2]) - before) * 1000
        assert r.status_code in (200, 503), (path, r.status_code, r.text[:200])
        if i >= warmup:
            times.append(elapsed)
            cpu.append(used)
    return {"path": path, "median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times),
            "cpu_median_ms": statistics.median(cpu)}


def run(url: str, pid: int, args: argparse.Namespace) -> dict:
    server = psutil.Process(pid)
    with httpx.Client(base_url=url, headers={"authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=120) as c:
        traces = c.get("/v1/traces", params={"tenant_id": TENANT, "limit": 1}).json()["traces"]
        found = page_requests(url, traces[0]["trace_id"])
        pages = {}
        for template, seen in found.items():
            timed = [time_request(c, server, path, args.calls, args.warmup) for path in seen["requests"]]
            pages[template] = {"requests": timed, "sum_median_ms": sum(t["median_ms"] for t in timed),
                               "sum_cpu_ms": sum(t["cpu_median_ms"] for t in timed),
                               "max_median_ms": max(t["median_ms"] for t in timed), "browser_ms": seen["browser_ms"]}
    return pages


def table(pages: dict) -> str:
    lines = [f"{'page':<24}{'requests':>9}{'wall (sum)':>13}{'CPU (sum)':>12}{'slowest':>10}{'in browser':>12}  "
             f"target <= {TARGET_MS:.0f} ms (wall sum)"]
    for template, p in pages.items():
        verdict = "ok" if p["sum_median_ms"] <= TARGET_MS else "MISSED"
        lines.append(f"{template:<24}{len(p['requests']):>9}{p['sum_median_ms']:>10.1f} ms{p['sum_cpu_ms']:>9.1f} ms"
                     f"{p['max_median_ms']:>7.1f} ms{p['browser_ms']:>9.0f} ms  {verdict}")
    lines.append("")
    for template, p in pages.items():
        for t in p["requests"]:
            lines.append(f"  {t['median_ms']:7.1f} ms wall (min {t['min_ms']:.1f}, max {t['max_ms']:.1f}), "
                         f"{t['cpu_median_ms']:6.1f} ms CPU  {t['path']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    if not os.path.exists(CHROMIUM):
        raise SystemExit("bench.ui needs Debian's chromium (apt-get install -y chromium) to see what each page asks")
    work_dir = tempfile.mkdtemp(prefix="tea-bench-ui-")
    environment = report.environment(["python -m bench.ui", *(argv or [])])
    try:
        data_dir = build(work_dir, args.events, args.seed)
        srv = tea_server(data_dir, free_port(), {"TEA_LOG_LEVEL": "warning"}).start(timeout=120)
        try:
            pages = run(f"http://127.0.0.1:{srv.port}", srv.proc.pid, args)
        finally:
            srv.stop()
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    print()
    print(table(pages))
    record = {"events": args.events, "tenant": TENANT, "calls": args.calls, "pages": pages,
              "environment": environment}
    os.makedirs(args.results_dir, exist_ok=True)
    path = os.path.join(args.results_dir, f"ui-{time.strftime('%Y%m%d-%H%M%S')}.json")
    with open(path, "w") as fh:
        json.dump(record, fh, indent=2)
    print(f"\nresults written to {os.path.relpath(path)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
