"""docs/configuration.md's settings table is generated from the declarations and kept current."""
from __future__ import annotations

from pathlib import Path

import pytest

from tea.cli import main
from tea.settings import SETTINGS
from tea.settings_doc import BEGIN, END, main as doc_main, markdown, splice

PAGE = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_the_committed_table_is_the_generated_one() -> None:
    page = PAGE.read_text()
    assert splice(page) == page, "the settings table is stale: run python -m tea.settings_doc"


def test_a_stale_table_is_detected_and_rewritten(tmp_path: Path) -> None:
    page = tmp_path / "configuration.md"
    stale = PAGE.read_text().replace("| `port` | `TEA_PORT` | `3001` |", "| `port` | `TEA_PORT` | `3000` |")
    page.write_text(stale)
    assert doc_main([str(page), "--check"]) == 1 and page.read_text() == stale
    assert doc_main([str(page)]) == 0 and page.read_text() == PAGE.read_text()
    with pytest.raises(ValueError, match="markers"):
        splice("# no markers here\n")


def test_one_row_per_setting_with_what_the_declaration_says() -> None:
    rows = {line.split(" | ")[0][3:-1]: line for line in markdown().splitlines() if line.startswith("| `")}
    assert list(rows) == [s.key for s in SETTINGS]
    assert rows["buffer.max_bytes"] == (
        "| `buffer.max_bytes` | `TEA_BUFFER__MAX_BYTES` | `1GiB` | a size in bytes >= 4096, e.g. 1048576, 20MiB, "
        "1GiB | bound of the durable buffer's backlog not yet in storage or not yet read by a processor (the slowest "
        "consumer counts); ingestion answers 503 past it |")
    assert "Also read from `ANALYTICS_DATABASE_URL`. Secret: masked in `tea config`." in rows["postgres_url"]
    assert "Telemetron's `[processor] channel_capacity` and `TELEMETRON_PROCESSOR__CHANNEL_CAPACITY`" in \
        rows["processing.max_pending_events"]
    assert "| one of debug, info, warning, error | logging level. Flag `--log-level`. |" in rows["log_level"]
    assert "`TEA_TOKEN`" in markdown()
    assert BEGIN in PAGE.read_text() and END in PAGE.read_text()


def test_tea_config_markdown_prints_the_table(capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    monkeypatch.setenv("TEA_PORT", "not a port")  # the table needs no valid settings
    assert main(["config", "--markdown"]) == 0
    assert capsys.readouterr().out == markdown()
