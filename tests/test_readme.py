"""Keep the docs true: the README's tour and every docs page's examples run against a live server, the
signing and OpenTelemetry examples against live servers too, and every setting is in the settings table."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from tea.settings import SETTINGS
from tests.conftest import make_settings

ROOT = Path(__file__).parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
COMMAND_PREFIXES = ("curl ", "printf ", ".venv/bin/tea ", "export TEA_TOKEN=")


def text(path: Path) -> str:
    return path.read_text()


def blocks(path: Path, language: str) -> list[str]:
    """The fenced blocks of one language, also when indented inside a list item."""
    found = re.findall(rf"^([ \t]*)```{language}\n(.*?)^\1```", text(path), re.S | re.M)
    return [re.sub(rf"^{indent}", "", body, flags=re.M) if indent else body for indent, body in found]


def listed() -> list[Path]:
    """The docs pages in the order the README's "Where to go next" lists them."""
    readme = text(README)
    start = readme.index("## Where to go next")
    end = readme.find("\n## ", start + 1)
    names = re.findall(r"\]\((docs/[\w.-]+\.md)\)", readme[start:end if end > 0 else None])
    return [ROOT / name for name in dict.fromkeys(names)]


def pages() -> list[Path]:
    """README first, then the listed pages, then any other page of docs/ (sorted): every page's
    examples run, in an order a reader could follow."""
    ordered = listed()
    return [README, *ordered, *sorted(set(DOCS.glob("*.md")) - set(ordered))]


def commands(path: Path) -> list[str]:
    out: list[str] = []
    for block in blocks(path, "bash"):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.strip()
            if line.startswith(COMMAND_PREFIXES):
                out.append(line)  # bash itself drops trailing comments
    return out


def test_every_setting_is_documented() -> None:
    page = text(DOCS / "configuration.md")
    start, end = page.index("<!-- settings-table:start -->"), page.index("<!-- settings-table:end -->")
    table = page[start:end]
    for setting in SETTINGS:
        assert f"| `{setting.key}` | `{setting.env}` |" in table, setting.key


def test_the_pages_are_read_in_order() -> None:
    """The README links every page of its "where to go next" list, and those pages exist."""
    names = [path.name for path in listed()]
    assert all(path.exists() for path in listed())
    for name in ("ingestion.md", "authentication.md", "opentelemetry.md", "agents.md", "analytics.md",
                 "operations.md", "configuration.md", "scale.md", "plugins.md", "performance.md", "development.md"):
        assert name in names, name
    assert len(text(README).splitlines()) <= 300  # the README stays a ten-minute read


def test_the_examples_work(serve, tmp_path: Path) -> None:
    admin = "readme-admin-" + "a" * 32
    live = serve(storage_backend="duckdb", auth_validation=True, admin_token=admin, telemetron__tenant="iot")
    tour = commands(README)
    assert len(tour) >= 10 and tour[0].startswith("export TEA_TOKEN="), tour[:1]
    runs = [(README, cmd) for cmd in tour] + [(page, cmd) for page in pages()[1:] for cmd in commands(page)]
    assert len(runs) >= 85, len(runs)  # every command the single-page README had, and the tour
    for page in ("ingestion.md", "authentication.md", "opentelemetry.md", "agents.md", "analytics.md"):
        assert sum(1 for path, _ in runs if path.name == page) >= 3, page
    env = {**os.environ, "TEA_PORT": str(live.port), "TEA_HOST": "127.0.0.1", "TEA_ADMIN_TOKEN": admin}
    venv_tea = str(Path(sys.executable).parent / "tea")
    for page, cmd in runs:
        run_one(page.name, cmd.replace("http://127.0.0.1:3001", live.url).replace(".venv/bin/tea", venv_tea),
                env, tmp_path)


def test_the_tour_works_pasted_at_once(serve, tmp_path: Path) -> None:
    """The README's tour verbatim, in order, against a fresh server with the writer's default flush interval
    and no pause between the commands (read-your-writes): every answer the README shows is the answer."""
    admin = "readme-admin-" + "d" * 32
    live = serve(storage_backend="duckdb", auth_validation=True, admin_token=admin,
                 writer__flush_interval_ms=make_settings(tmp_path / "defaults").writer.flush_interval_ms)
    env = {**os.environ, "TEA_PORT": str(live.port), "TEA_HOST": "127.0.0.1", "TEA_ADMIN_TOKEN": admin}
    tour = shown(README)
    assert [cmd for cmd, _ in tour] == commands(README)
    compared = 0
    for cmd, answer in tour:
        out = run_one("README.md", cmd.replace("http://127.0.0.1:3001", live.url), env, tmp_path, pause_s=0)
        if answer is not None:
            assert answer.fullmatch(out), (cmd, answer.pattern, out)
            compared += 1
    assert compared >= 7, compared  # the writes, the reads back, metrics, stats, usage, the Prometheus line


def shown(path: Path) -> list[tuple[str, re.Pattern[str] | None]]:
    """Each command of ``path`` with the answer the page shows for it (the comment lines right below it that
    start with JSON or a metric line), as a pattern where ``…`` stands for anything."""
    out: list[tuple[str, list[str]]] = []
    for block in blocks(path, "bash"):
        below: list[str] | None = None
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            line = line.strip()
            if line.startswith(COMMAND_PREFIXES):
                out.append((line, []))
                below = out[-1][1]
            elif below is not None and line.startswith("#") and (below or re.match(r"#\s*[{\[]|# tea_", line)):
                below.append(line[1:].strip())
            else:
                below = None
    return [(cmd, re.compile(".*?".join(re.escape(part) for part in re.split(r"\s*…[\s,]*", "".join(lines))),
                             re.S) if lines else None) for cmd, lines in out]


def run_one(page: str, cmd: str, env: dict[str, str], cwd: Path, pause_s: float = 0.1) -> str:
    """Run one documented command and return what it printed; what it exports is kept in ``env`` for
    the commands after it."""
    exporting = cmd.startswith("export ")
    name = cmd.split("=", 1)[0].split()[1] if exporting else ""
    if exporting:
        cmd = f'{cmd} && printf %s "${name}"'
    proc = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True, timeout=60,
                          cwd=cwd, env=env)
    where = (page, cmd)
    if exporting:
        assert proc.returncode == 0 and proc.stdout.startswith("tk_"), (where, proc.stdout, proc.stderr)
        env[name] = proc.stdout
        return proc.stdout
    assert proc.returncode == 0, (where, proc.stderr)
    out = proc.stdout.strip()
    time.sleep(pause_s)  # let the writer store what was just posted (flush interval 20 ms in tests)
    if ">" in cmd.split("#")[0] or " -o " in cmd:
        return out  # written to a file
    assert out, where
    try:
        body = json.loads(out)
    except ValueError:
        assert ("format csv" in cmd or "format=csv" in cmd or "grep" in cmd or out in ("OK", "Success")
                or " token " in cmd and "token_id" in out), (where, out[:200])
        return out
    assert not (isinstance(body, dict) and "error" in body), (where, out)
    if isinstance(body, dict) and "content" in body:
        assert not body.get("isError"), (where, out)
    return out


def test_the_signing_examples_work(serve, tmp_path: Path) -> None:
    import httpx

    admin = "readme-admin-" + "b" * 32
    live = serve(storage_backend="memory", auth_validation=True, admin_token=admin)
    issued = httpx.post(live.url + "/v1/tokens", json={"tenant_id": "acme", "tier": "enterprise"},
                        headers={"authorization": f"Bearer {admin}"}).json()
    env = {**os.environ, "TEA_SECRET": issued["secret"], "TEA_SIGNING_TOKEN": issued["token"]}
    page = DOCS / "authentication.md"
    shell = blocks(page, "sh")
    python = [block for block in blocks(page, "python") if "urllib.request" in block]
    assert len(shell) == 1 and len(python) == 1
    runs = [["bash", "-euo", "pipefail", "-c", shell[0]], [sys.executable, "-c", python[0]]]
    for argv in runs:
        argv[-1] = argv[-1].replace("http://127.0.0.1:3001", live.url)
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["accepted"] == 1, proc.stdout


def test_the_telemetry_kit_example_works(serve, tmp_path: Path) -> None:
    """docs/ingestion.md's complete telemetry-kit request, run as documented: its body, signed by openssl."""
    import httpx

    admin = "readme-admin-" + "e" * 32
    live = serve(storage_backend="memory", auth_validation=True, admin_token=admin)
    create = next(cmd for cmd in commands(DOCS / "ingestion.md") if "/v1/tokens" in cmd)
    env = {**os.environ, "TEA_ADMIN_TOKEN": admin}
    issued = json.loads(run_one("ingestion.md", create.replace("http://127.0.0.1:3001", live.url), env, tmp_path))
    env.update(TEA_SIGNING_TOKEN=issued["token"], TEA_SECRET=issued["secret"])
    [snippet] = [block for block in blocks(DOCS / "ingestion.md", "sh") if "/v1/ingest/" in block]
    for attempt in range(2):  # twice: a fresh event id, nonce and timestamp each time
        proc = subprocess.run(["bash", "-euo", "pipefail", "-c", snippet.replace("http://127.0.0.1:3001", live.url)],
                              capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout) == {"status": "success", "accepted": 1, "rejected": 0,
                                           "message": "All events ingested successfully"}, proc.stdout
    live.wait_stored(2)
    stored = httpx.get(live.url + "/v1/events", params={"event_type": "command_execution"},
                       headers={"authorization": f"Bearer {issued['token']}"}).json()["events"]
    assert len(stored) == 2 and len({e["event_id"] for e in stored}) == 2
    event = stored[0]
    assert (event["source"], event["tenant_id"], event["organization"]) == \
        ("my-cli", "acme", "550e8400-e29b-41d4-a716-446655440000")
    assert event["user_id"].startswith("client_") and event["attributes"]["data"]["command"] == "build"
    assert event["attributes"]["environment"]["os"] == "linux"


def test_the_opentelemetry_examples_work(serve, tmp_path: Path) -> None:
    """The OTEL_* variables and SDK snippet of docs/opentelemetry.md, unchanged but for the address:
    HTTP and gRPC."""
    import httpx

    from tests.conftest import free_port

    admin = "readme-admin-" + "c" * 32
    grpc_port = free_port()
    live = serve(storage_backend="duckdb", auth_validation=True, admin_token=admin, otlp__grpc_port=grpc_port)
    token = httpx.post(live.url + "/v1/tokens", json={"tenant_id": "acme", "tier": "enterprise"},
                       headers={"authorization": f"Bearer {admin}"}).json()["token"]
    page = DOCS / "opentelemetry.md"
    exports = [b for b in blocks(page, "shell") if "OTEL_EXPORTER_OTLP_ENDPOINT" in b]
    snippet = [b for b in blocks(page, "python") if "opentelemetry" in b]
    assert len(exports) == 1 and len(snippet) == 1
    lines = [line for line in exports[0].splitlines() if line.startswith("export ")]
    http_lines, grpc_lines = lines[:3], lines[:3] + lines[3:]
    runs = {"http": (http_lines, snippet[0], live.url),
            "grpc": (grpc_lines, snippet[0].replace("otlp.proto.http", "otlp.proto.grpc"),
                     f"http://127.0.0.1:{grpc_port}")}
    for transport, (exported, code, endpoint) in runs.items():
        script = "\n".join(exported).replace("http://127.0.0.1:4318", endpoint).replace(
            "http://127.0.0.1:4317", endpoint) + f"\nexec {sys.executable} -c \"$SNIPPET\""
        env = {**os.environ, "TEA_TOKEN": token, "SNIPPET": code, "OTEL_SERVICE_NAME": ""}
        proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True,
                              timeout=60, cwd=tmp_path, env=env)
        assert proc.returncode == 0, (transport, proc.stderr)
        assert "Failed to export" not in proc.stderr, (transport, proc.stderr)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        traces = httpx.get(live.url + "/v1/traces?service=checkout",
                           headers={"authorization": f"Bearer {token}"}).json()["traces"]
        if len(traces) == 2:
            break
        time.sleep(0.05)
    assert [(t["span_count"], t["root_span"]) for t in traces] == [(2, "POST /api/orders")] * 2
    spans = httpx.get(live.url + "/v1/events?event_type=span&source=checkout",
                      headers={"authorization": f"Bearer {token}"}).json()["events"]
    assert sorted((s["method"], s["status_code"], s["tokens_used"], s["tenant_id"]) for s in spans) == [
        ("POST /api/orders", 201, None, "acme")] * 2 + [("chat gpt-4o", None, 160, "acme")] * 2
