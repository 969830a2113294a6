"""CI (``.ci/run``: ``./scripts/test`` with TEA_REQUIRE_SERVICES=1) runs the tests that prove TEA loses
nothing: the kill -9 durability tests and the storage-outage tests are in the default suite, not
deselected by a marker or an option, and need real servers (a skip is a failure there)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQUIRED = ["tests/e2e/test_crash_recovery.py::test_sigkill_mid_stream_loses_and_duplicates_nothing",
            "tests/e2e/test_storage_outage.py::test_reads_answer_503_while_storage_is_down[postgres-killed]",
            "tests/e2e/test_storage_outage.py::test_reads_answer_503_while_storage_is_down[postgres-hung]",
            "tests/e2e/test_storage_outage.py::test_reads_answer_503_while_storage_is_down[clickhouse-killed]",
            "tests/e2e/test_storage_outage.py::test_reads_answer_503_while_storage_is_down[clickhouse-hung]",
            "tests/e2e/test_outage.py::test_a_storage_outage_is_buffered_reported_and_drained[postgres]"]


def test_ci_runs_the_whole_default_suite_with_services_required() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert "export TEA_REQUIRE_SERVICES=1" in ci and "exec ./scripts/test\n" in ci  # no arguments: everything
    assert '-m pytest "${xdist[@]}" "$@"' in (ROOT / "scripts" / "test").read_text()


def test_the_durability_and_outage_tests_are_collected_by_default() -> None:
    files = sorted({node.split("::")[0] for node in REQUIRED})
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", *files], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    collected = set(out.stdout.splitlines())
    assert not [node for node in REQUIRED if node not in collected], out.stdout
    assert "deselected" not in out.stdout
