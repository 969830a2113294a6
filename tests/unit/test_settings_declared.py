"""The settings as declared: one declaration gives the type, the table row, the error text and the masking."""
from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Annotated

import pytest

from tea.errors import ConfigError
from tea.settings import SETTINGS, Settings, load, unknown_env
from tea.settings_schema import Section, doc, table

# one setting of each kind, a value it refuses, and the same value as a tea.toml literal
KINDS = [
    ("max_events", "many", '"many"', "a whole number >= 1"),
    ("retention_interval_s", "soon", '"soon"', "a number >= 1"),
    ("access_log", "maybe", '"maybe"', "true or false"),
    ("buffer.max_bytes", "lots", '"lots"', "a size in bytes >= 4096, e.g. 1048576, 20MiB, 1GiB"),
    ("buffer.ack", "sometimes", '"sometimes"', "one of durable, memory"),
    ("retention_tenant_hours", "acme", '"acme=x"', "tenant=hours pairs"),
    ("alerts.rules", '{"id": 1}', '"[1, 2]"', "a list of tables"),
    ("duckdb.row_group_size", "4097", "4097", "from 2048 to 1048576, a multiple of 2048"),
    ("prometheus.duration_buckets_ms", "5,1", "[5, 1]", "ascending numbers"),
    ("usage.billable", "events,coins", '"events,coins"', "a comma list of events, spans, metric_points, log_records"),
]


def test_every_kind_is_covered_above() -> None:
    covered = {next(s.kind for s in SETTINGS if s.key == key) for key, *_ in KINDS}
    assert {s.kind for s in SETTINGS} - {"str", "path"} == covered - {"str"}  # str, path: in the file test


@pytest.mark.parametrize("key, text, _toml, accepted", KINDS)
def test_a_bad_environment_value_names_the_variable(key: str, text: str, _toml: str, accepted: str) -> None:
    env = "TEA_" + key.upper().replace(".", "__")
    with pytest.raises(ConfigError) as info:
        load({}, env={env: text})
    assert str(info.value).startswith(f"invalid {env}={text!r}: expected ") and accepted in str(info.value)


@pytest.mark.parametrize("key, text, _toml, accepted", KINDS)
def test_a_bad_flag_value_names_the_flag(key: str, text: str, _toml: str, accepted: str) -> None:
    flag = "--" + key.replace("_", "-").replace(".", "-")
    with pytest.raises(ConfigError) as info:
        load({key: text}, env={})
    assert str(info.value).startswith(f"invalid {flag}={text!r}: expected ") and accepted in str(info.value)


@pytest.mark.parametrize("key, _text, toml, accepted", KINDS + [("default_tenant", "", "[1]", "a string"),
                                                              ("duckdb.path", "", "true", "a path")])
def test_a_bad_file_value_names_the_key_and_the_file(tmp_path: Path, key: str, _text: str, toml: str,
                                                     accepted: str) -> None:
    section, _, name = key.rpartition(".")
    config = tmp_path / "tea.toml"
    config.write_text((f"[{section}]\n" if section else "") + f"{name} = {toml}\n")
    with pytest.raises(ConfigError) as info:
        load({"config": str(config)}, env={})
    message = str(info.value)
    assert message.startswith(f"invalid {key}=") and f" in {config}: expected " in message
    assert accepted in message and "\n" not in message


def test_secret_values_never_appear_in_errors_or_reprs(tmp_path: Path) -> None:
    config = tmp_path / "tea.toml"
    config.write_text('[auth]\njwt_secret = ["hunter2-hunter2"]\n')
    with pytest.raises(ConfigError) as info:
        load({"config": str(config)}, env={})
    assert str(info.value) == f"invalid auth.jwt_secret=******** in {config}: expected a string"
    s = load({}, env={"TEA_ADMIN_TOKEN": "tok-sekrit-123", "TEA_REDIS_URL": "redis://:rpass@cache:6379/0",
                      "TEA_AUTH__JWT_SECRET": "hunter2-hunter2"})
    for text in (repr(s), str(s), repr(s.auth), f"{s}"):  # what a log line would show
        assert "tok-sekrit-123" not in text and "rpass" not in text and "hunter2" not in text
    assert "admin_token='********'" in repr(s) and "redis_url='redis://:********@cache:6379/0'" in repr(s)
    assert s.admin_token == "tok-sekrit-123" and s.auth.jwt_secret == "hunter2-hunter2"


def test_names_that_look_secret_are_declared_secret() -> None:
    for s in SETTINGS:
        last = s.key.rsplit(".", 1)[-1]
        if re.search(r"(^|_)(secret|password|token|key)$", last) or last in ("postgres_url", "clickhouse_url",
                                                                            "redis_url"):
            assert s.secret, s.key


def test_every_row_is_a_typed_attribute_with_its_default() -> None:
    s = load({}, env={})
    for setting in SETTINGS:
        assert s.get(setting.key) == setting.default, setting.key
        assert s.source(setting.key) == "default"
    assert s.tier.pro.events_per_month == 100000 and dict(s.tier.items())["enterprise"].requests_per_minute == 0
    assert [row.key for row in SETTINGS].count("tier.free.events_per_month") == 1
    assert len({row.key for row in SETTINGS}) == len(SETTINGS)


def test_a_declaration_without_doc_is_refused() -> None:
    class Broken(Section, frozen=True):
        fine: Annotated[int, doc("documented")] = 1
        bare: int = 2

    with pytest.raises(TypeError, match="setting 'bare' has no doc"):
        table(Broken)


def test_replace_refuses_unknown_keys() -> None:
    s = load({}, env={})
    with pytest.raises(TypeError):
        s.replace(buffer__max_byte=1)
    with pytest.raises(AttributeError):
        s.replace(bufer__max_bytes=1)
    t = s.replace(tier__free__requests_per_minute=7, port=1)
    assert (t.tier.free.requests_per_minute, t.port, s.tier.free.requests_per_minute) == (7, 1, 10)


def test_telemetron_environment_names_are_declared_with_their_setting() -> None:
    s = load({}, env={"TELEMETRON_PROCESSOR__BATCH_SIZE": "7"})
    assert s.processing.batch_size == 7 and s.source("processing.batch_size") == "env TELEMETRON_PROCESSOR__BATCH_SIZE"
    with pytest.raises(ConfigError, match=r"^invalid TELEMETRON_HTTP__PORT='x': expected a whole number"):
        load({}, env={"TELEMETRON_HTTP__PORT": "x"})


def test_known_tea_variables_that_are_not_settings_are_not_typos() -> None:
    env = {"TEA_TOKEN": "t", "TEA_REQUIRE_SERVICES": "1", "TEA_TOKN": "t", "TEA_CONFIG": "x",
           "TEA_BUFFER__MAX_BYTES": "1", "TELEMETRON_HTTP__PORT": "1"}
    assert unknown_env(env) == ["TEA_TOKN"]


def test_the_python_sdks_variables_are_not_typos() -> None:
    """An application and `tea serve` sharing an environment: tea-client's variables are known names."""
    sdk = Path(__file__).resolve().parents[2] / "clients" / "python" / "tea_client"
    read = {name for path in sdk.glob("*.py") for name in re.findall(r"[\"'](TEA_[A-Z_]+)[\"']", path.read_text())}
    assert {"TEA_ENDPOINT", "TEA_TOKEN", "TEA_SECRET", "TEA_SPOOL_DIR", "TEA_MCP_CONFIG"} <= read
    assert unknown_env(dict.fromkeys(read | {"TEA_ENDPIONT"}, "x")) == ["TEA_ENDPIONT"]


def test_settings_are_immutable() -> None:
    s = load({}, env={})
    with pytest.raises(AttributeError):
        s.buffer.max_bytes = 1  # type: ignore[misc]
    assert isinstance(s, Settings)


SNIPPET = """\
from typing import assert_type
from tea.settings import TierQuota, load

settings = load({}, env={})
assert_type(settings.buffer.max_bytes, int)
assert_type(settings.duckdb.threads, int | None)
assert_type(settings.auth.jwt_secret, str | None)
assert_type(settings.retention_tenant_hours, dict[str, int])
assert_type(settings.tier.free, TierQuota)
assert_type(settings.tier.free.events_per_month, int)
assert_type(settings.retention_hours_effective, int)
ack: str = settings.buffer.ack
settings.buffer.max_byte  # error: no such setting
settings.buffer.max_bytes = 1  # error: read-only
port: str = settings.port  # error: an int
"""


def test_typed_access_is_checked_by_mypy(tmp_path: Path) -> None:
    pytest.importorskip("mypy")
    (tmp_path / "snippet.py").write_text(SNIPPET)
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-m", "mypy", "--follow-imports=silent", "--ignore-missing-imports",
                           "--cache-dir", str(tmp_path / "cache"), "--no-error-summary", str(tmp_path / "snippet.py")],
                          cwd=root, capture_output=True, text=True, timeout=240)
    errors = {int(m.group(1)): m.group(2) for m in re.finditer(r"snippet\.py:(\d+): error: (.*)", proc.stdout)}
    expected = [n for n, line in enumerate(SNIPPET.splitlines(), 1) if "# error:" in line]
    assert sorted(errors) == expected, textwrap.indent(proc.stdout + proc.stderr, "  ")
    assert "has no attribute \"max_byte\"" in errors[expected[0]] and "read-only" in errors[expected[1]]
