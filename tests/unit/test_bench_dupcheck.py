from __future__ import annotations

import re

import pytest

from bench import dupcheck


def test_dupcheck_prints_both_lookups_at_each_mark(capsys: pytest.CaptureFixture[str]) -> None:
    dupcheck.main(["--batches", "2", "--batch", "300", "--minutes", "1", "--calls", "1"])
    lines = capsys.readouterr().out.splitlines()
    assert [re.match(r"\s*([\d,]+) stored events: at the events' own time +[\d.]+ ms, within the window +[\d.]+ ms",
                     line).group(1) for line in lines] == ["300", "600"]  # type: ignore[union-attr]
