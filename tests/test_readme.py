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
            if line.startswith(("curl ", "printf ", ".venv/bin/tea ")):
                out.append(line)  # bash itself drops trailing comments
    return out


def test_the_examples_work(serve, tmp_path: Path) -> None:
    live = serve(storage_backend="duckdb")
    cmds = commands()
    assert len(cmds) >= 30
    env = {**os.environ, "TEA_PORT": str(live.port), "TEA_HOST": "127.0.0.1"}
    venv_tea = str(Path(sys.executable).parent / "tea")
    for cmd in cmds:
        cmd = cmd.replace("http://127.0.0.1:3001", live.url).replace(".venv/bin/tea", venv_tea)
        proc = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True, timeout=60,
                              cwd=tmp_path, env=env)
        assert proc.returncode == 0, (cmd, proc.stderr)
        out = proc.stdout.strip()
        if ">" in cmd.split("#")[0] or " -o " in cmd:
            continue  # written to a file
        assert out, cmd
        try:
            body = json.loads(out)
        except ValueError:
            assert "format csv" in cmd or "format=csv" in cmd or "grep" in cmd or out == "OK", (cmd, out[:200])
            continue
        assert not (isinstance(body, dict) and "error" in body), (cmd, out)
        if isinstance(body, dict) and "content" in body:
            assert not body.get("isError"), (cmd, out)
        time.sleep(0.1)  # let the writer store what was just posted (flush interval 20 ms in tests)
