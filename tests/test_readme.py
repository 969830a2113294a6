"""Keep the README true: its settings table and its curl examples, run against a live server."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from tea.settings import SETTINGS

README = (Path(__file__).parent.parent / "README.md").read_text()


def test_every_setting_is_documented() -> None:
    for setting in SETTINGS:
        assert f"| `{setting.key}` | `{setting.env}` |" in README, setting.key


def commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", README, re.S)
    out: list[str] = []
    for block in blocks:
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.strip()
            if line.startswith(("curl ", "printf ", ".venv/bin/tea ", "export TEA_TOKEN=")):
                out.append(line)  # bash itself drops trailing comments
    return out


def test_the_examples_work(serve, tmp_path: Path) -> None:
    admin = "readme-admin-" + "a" * 32
    live = serve(storage_backend="duckdb", auth_validation=True, admin_token=admin, telemetron__tenant="iot")
    cmds = commands()
    assert len(cmds) >= 30
    env = {**os.environ, "TEA_PORT": str(live.port), "TEA_HOST": "127.0.0.1", "TEA_ADMIN_TOKEN": admin}
    venv_tea = str(Path(sys.executable).parent / "tea")
    for cmd in cmds:
        cmd = cmd.replace("http://127.0.0.1:3001", live.url).replace(".venv/bin/tea", venv_tea)
        if cmd.startswith("export "):  # keep what the README exports for the commands after it
            name = cmd.split("=", 1)[0].split()[1]
            cmd = f'{cmd} && printf %s "${name}"'
        proc = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True, timeout=60,
                              cwd=tmp_path, env=env)
        if cmd.startswith("export "):
            assert proc.returncode == 0 and proc.stdout.startswith("tk_"), (cmd, proc.stdout, proc.stderr)
            env[name] = proc.stdout
            continue
        assert proc.returncode == 0, (cmd, proc.stderr)
        out = proc.stdout.strip()
        if ">" in cmd.split("#")[0] or " -o " in cmd:
            continue  # written to a file
        assert out, cmd
        try:
            body = json.loads(out)
        except ValueError:
            assert ("format csv" in cmd or "format=csv" in cmd or "grep" in cmd or out in ("OK", "Success")
                    or " token " in cmd and "token_id" in out), (cmd, out[:200])
            continue
        assert not (isinstance(body, dict) and "error" in body), (cmd, out)
        if isinstance(body, dict) and "content" in body:
            assert not body.get("isError"), (cmd, out)
        time.sleep(0.1)  # let the writer store what was just posted (flush interval 20 ms in tests)


def test_the_signing_examples_work(serve, tmp_path: Path) -> None:
    import httpx

    admin = "readme-admin-" + "b" * 32
    live = serve(storage_backend="memory", auth_validation=True, admin_token=admin)
    issued = httpx.post(live.url + "/v1/tokens", json={"tenant_id": "acme", "tier": "enterprise"},
                        headers={"authorization": f"Bearer {admin}"}).json()
    env = {**os.environ, "TEA_SECRET": issued["secret"], "TEA_SIGNING_TOKEN": issued["token"]}
    shell = re.findall(r"```sh\n(.*?)```", README, re.S)
    python = [block for block in re.findall(r"```python\n(.*?)```", README, re.S) if "urllib.request" in block]
    assert len(shell) == 1 and len(python) == 1
    runs = [["bash", "-euo", "pipefail", "-c", shell[0]], [sys.executable, "-c", python[0]]]
    for argv in runs:
        argv[-1] = argv[-1].replace("http://127.0.0.1:3001", live.url)
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["accepted"] == 1, proc.stdout


def test_the_opentelemetry_examples_work(serve, tmp_path: Path) -> None:
    """The README's OTEL_* variables and SDK snippet, unchanged but for the address: HTTP and gRPC."""
    import httpx

    from tests.conftest import free_port

    admin = "readme-admin-" + "c" * 32
    grpc_port = free_port()
    live = serve(storage_backend="duckdb", auth_validation=True, admin_token=admin, otlp__grpc_port=grpc_port)
    token = httpx.post(live.url + "/v1/tokens", json={"tenant_id": "acme", "tier": "enterprise"},
                       headers={"authorization": f"Bearer {admin}"}).json()["token"]
    exports = [b for b in re.findall(r"```shell\n(.*?)```", README, re.S) if "OTEL_EXPORTER_OTLP_ENDPOINT" in b]
    snippet = [b for b in re.findall(r"```python\n(.*?)```", README, re.S) if "opentelemetry" in b]
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
