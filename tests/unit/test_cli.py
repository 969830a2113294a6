from __future__ import annotations

import re
import subprocess
import sys

from tea import __version__
from tea.cli import main


def test_version(capsys) -> None:
    assert main(["version"]) == 0
    assert capsys.readouterr().out.strip() == f"tea {__version__}"


def test_config_prints_effective_settings_and_sources(capsys, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("TEA_MAX_EVENTS", "77")
    assert main(["config", "--port", "4242", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^port +?= 4242 +# flag --port$", out, re.M)
    assert "max_events" in out and "77" in out and "# env TEA_MAX_EVENTS" in out
    assert re.search(r"^retention_hours +?= 720 ", out, re.M)


def test_otlp_port_flags(capsys, tmp_path) -> None:
    assert main(["config", "--data-dir", str(tmp_path), "--otlp-grpc-port", "0", "--otlp-http-port", "14318"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^otlp\.grpc_port +?= 0 +# flag --otlp-grpc-port$", out, re.M)
    assert re.search(r"^otlp\.http_port +?= 14318 +# flag --otlp-http-port$", out, re.M)


def test_invalid_setting_stops_with_one_line_and_exit_2(tmp_path) -> None:
    proc = subprocess.run([sys.executable, "-m", "tea", "serve", "--data-dir", str(tmp_path)],
                          env={"TEA_STORAGE_BACKEND": "oracle", "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("tea: invalid storage_backend='oracle': no plugin provides it "
                                   "(available: clickhouse, duckdb, memory, postgres)")
