"""tea-client installs on Python >= 3.9: nothing in it may need a newer Python (checked by vermin, which reads the
syntax and the standard-library names each version added). This machine runs only 3.11."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import tomllib

CLIENT = Path(__file__).resolve().parents[2] / "clients" / "python"


def test_the_sdk_needs_nothing_newer_than_python_3_9() -> None:
    vermin = Path(sys.executable).with_name("vermin")  # the test extra's console script (no `python -m vermin`)
    done = subprocess.run([str(vermin), "--no-tips", "--violations", "-t=3.9-",
                           "--eval-annotations", str(CLIENT / "tea_client")], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_package_declares_3_9_and_imports_nothing_of_the_server() -> None:
    project = tomllib.loads((CLIENT / "pyproject.toml").read_text())["project"]
    assert project["name"] == "tea-client" and project["requires-python"] == ">=3.9"
    for path in (CLIENT / "tea_client").glob("*.py"):
        text = path.read_text()
        assert "from tea." not in text and "import tea\n" not in text, path
