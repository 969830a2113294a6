"""Keep the README true: its settings table and its curl examples, run against a live server."""
from __future__ import annotations

import json
import re
import subprocess
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
            if line.startswith(("curl ", "printf ")):
                out.append(line)  # bash itself drops trailing comments
    return out


def test_the_curl_examples_work(serve) -> None:
    live = serve(storage_backend="duckdb")
    cmds = commands()
    assert len(cmds) >= 12
    for cmd in cmds:
        cmd = cmd.replace("http://127.0.0.1:3001", live.url)
        proc = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, (cmd, proc.stderr)
        out = proc.stdout.strip()
        if out == "OK":
            continue
        body = json.loads(out)
        assert not (isinstance(body, dict) and "error" in body), (cmd, out)
        if isinstance(body, dict) and "content" in body:
            assert not body.get("isError"), (cmd, out)
        time.sleep(0.1)  # let the writer store what was just posted (flush interval 20 ms in tests)
