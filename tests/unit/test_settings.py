from __future__ import annotations

from pathlib import Path

import pytest

from tea.errors import ConfigError
from tea.settings import Settings, load, mask, unknown_env


def write_toml(tmp_path: Path, text: str) -> str:
    path = tmp_path / "tea.toml"
    path.write_text(text)
    return str(path)


def test_defaults() -> None:
    s = load({}, env={})
    assert (s.host, s.port, s.data_dir, s.storage_backend) == ("127.0.0.1", 3001, "./tea-data", "duckdb")
    assert s.max_events == 10000 and s.auth_validation is True
    assert s.buffer.max_bytes == 1024**3 and s.buffer.ack == "durable"
    assert s.max_body_bytes == 20 * 1024**2 and s.max_batch_events == 10000


def test_precedence_flag_over_env_over_file_over_default(tmp_path: Path) -> None:
    config = write_toml(tmp_path, 'port = 4000\nhost = "0.0.0.0"\nmax_events = 5\n[buffer]\nmax_bytes = "2MiB"\n')
    env = {"TEA_PORT": "5000", "TEA_BUFFER__MAX_BYTES": "3MiB", "TEA_CONFIG": config}
    s = load({"port": "6000"}, env=env)
    assert s.port == 6000 and s.source("port") == "flag --port"
    assert s.buffer.max_bytes == 3 * 1024**2 and s.source("buffer.max_bytes") == "env TEA_BUFFER__MAX_BYTES"
    assert s.host == "0.0.0.0" and s.source("host").startswith("file ")
    assert s.max_events == 5
    assert s.data_dir == "./tea-data" and s.source("data_dir") == "default"


def test_config_flag_beats_config_env(tmp_path: Path) -> None:
    a = write_toml(tmp_path, "port = 1111\n")
    b = tmp_path / "b.toml"
    b.write_text("port = 2222\n")
    assert load({"config": str(b)}, env={"TEA_CONFIG": a}).port == 2222


@pytest.mark.parametrize("env, fragment", [
    ({"TEA_PORT": "http"}, "invalid TEA_PORT='http': expected a whole number from 0 to 65535"),
    ({"TEA_PORT": "70000"}, "invalid TEA_PORT='70000'"),
    ({"TEA_AUTH_VALIDATION": "maybe"}, "invalid TEA_AUTH_VALIDATION='maybe': expected true or false"),
    ({"TEA_RETENTION_HOURS": "-1"}, "invalid TEA_RETENTION_HOURS='-1': expected a whole number >= 0"),
    ({"TEA_BUFFER__MAX_BYTES": "lots"}, "invalid TEA_BUFFER__MAX_BYTES='lots': expected a size in bytes"),
    ({"TEA_BUFFER__ACK": "sometimes"}, "expected one of durable, memory"),
    ({"TEA_DUCKDB__ROW_GROUP_SIZE": "3000"},
     "invalid TEA_DUCKDB__ROW_GROUP_SIZE='3000': expected a whole number from 2048 to 1048576, a multiple of 2048"),
    ({"TEA_DUCKDB__ROW_GROUP_SIZE": "1024"}, "invalid TEA_DUCKDB__ROW_GROUP_SIZE='1024'"),
])
def test_invalid_values_give_one_line_naming_the_key(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        load({}, env=env)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_storage_backend_is_any_name_checked_against_the_plugins_at_start() -> None:
    from tea.plugins import make_storage
    settings = load({}, env={"TEA_STORAGE_BACKEND": "mongo"})  # a plugin may provide it
    with pytest.raises(ConfigError) as info:
        make_storage(settings)
    assert str(info.value) == ("invalid storage_backend='mongo': no plugin provides it "
                               "(available: clickhouse, duckdb, memory, postgres)")


def test_invalid_value_in_file_names_the_key(tmp_path: Path) -> None:
    config = write_toml(tmp_path, '[writer]\nbatch_events = "many"\n')
    with pytest.raises(ConfigError, match="invalid writer.batch_events='many'"):
        load({"config": config}, env={})


def test_unknown_key_in_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown setting 'bufer.max_bytes'"):
        load({"config": write_toml(tmp_path, "[bufer]\nmax_bytes = 1\n")}, env={})


def test_missing_or_broken_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load({"config": str(tmp_path / "nope.toml")}, env={})
    with pytest.raises(ConfigError, match="invalid config file"):
        load({"config": write_toml(tmp_path, "port = = 1")}, env={})


def test_seed_names_and_values() -> None:
    s = load({}, env={"TEA_STORAGE_BACKEND": "memory", "TEA_MAX_EVENTS": "50", "TEA_AUTH_VALIDATION": "false"})
    assert s.storage_backend == "memory" and s.max_events == 50 and s.auth_validation is False


@pytest.mark.parametrize("backend, explicit, expected", [
    ("memory", None, 24), ("duckdb", None, 720), ("duckdb", "0", 0), ("memory", "6", 6)])
def test_retention_default_depends_on_backend(backend: str, explicit: str | None, expected: int) -> None:
    env = {"TEA_STORAGE_BACKEND": backend}
    if explicit is not None:
        env["TEA_RETENTION_HOURS"] = explicit
    assert load({}, env=env).retention_hours_effective == expected


@pytest.mark.parametrize("text, value", [("1048576", 1048576), ("20MiB", 20 * 1024**2), ("1GiB", 1024**3),
                                         ("5mb", 5_000_000), ("1.5KiB", 1536)])
def test_sizes(text: str, value: int) -> None:
    assert load({}, env={"TEA_MAX_BODY_BYTES": text}).max_body_bytes == value


def test_secrets_are_masked_in_effective_settings() -> None:
    s = load({}, env={"TEA_AUTH__JWT_SECRET": "hunter2-hunter2", "TEA_AUTH__JWKS_URL": "https://idp/jwks",
                      "TEA_POSTGRES_URL": "postgresql://tea:pa55word@db:5432/tea"})
    shown = {key: value for key, value, _ in s.effective(masked=True)}
    assert shown["auth.jwt_secret"] == "********"
    assert shown["postgres_url"] == "postgresql://tea:********@db:5432/tea"  # the target stays visible
    assert shown["auth.jwks_url"] == "https://idp/jwks"  # not secret: shown
    assert shown["admin_token"] is None  # unset: nothing to mask
    assert mask("postgresql://tea:pa55word@db:5432/tea") == "postgresql://tea:********@db:5432/tea"
    assert "hunter2" not in repr(s.effective(masked=True)) and "pa55word" not in repr(s.effective(masked=True))
    assert s.auth.jwt_secret == "hunter2-hunter2" and "hunter2-hunter2" in repr(s.effective(masked=False))


def test_unknown_environment_names_are_reported() -> None:
    assert unknown_env({"TEA_PROT": "1", "TEA_PORT": "1", "PATH": "/bin"}) == ["TEA_PROT"]


def test_settings_replace_and_sections() -> None:
    s = load({}, env={})
    t = s.replace(buffer__max_bytes=123)
    assert t.buffer.max_bytes == 123 and s.buffer.max_bytes == 1024**3
    assert isinstance(t, Settings)
    with pytest.raises(AttributeError):
        _ = s.nope


def test_per_tenant_retention_from_the_environment_and_the_file(tmp_path: Path) -> None:
    s = load({}, env={"TEA_RETENTION_TENANT_HOURS": "acme=48, beta=0"})
    assert s.retention_tenant_hours == {"acme": 48, "beta": 0}
    assert s.source("retention_tenant_hours") == "env TEA_RETENTION_TENANT_HOURS"
    config = write_toml(tmp_path, 'retention_hours = 24\n[retention_tenant_hours]\nacme = 48\n"beta.corp" = 0\n')
    s = load({}, env={"TEA_CONFIG": config})
    assert s.retention_tenant_hours == {"acme": 48, "beta.corp": 0} and s.retention_hours == 24
    assert s.source("retention_tenant_hours").startswith("file ")
    assert load({}, env={"TEA_CONFIG": config, "TEA_RETENTION_TENANT_HOURS": "gamma=1"}).retention_tenant_hours == \
        {"gamma": 1}  # the environment over the file
    assert load({}, env={"TEA_RETENTION_TENANT_HOURS": ""}).retention_tenant_hours == {}


@pytest.mark.parametrize("text", ["acme", "acme=-1", "=5", "acme=soon", "acme=1=2"])
def test_bad_per_tenant_retention_is_one_line_naming_the_variable(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        load({}, env={"TEA_RETENTION_TENANT_HOURS": text})
    assert "TEA_RETENTION_TENANT_HOURS" in str(info.value) and "acme=48,beta=0" in str(info.value)


def test_duckdb_row_group_size_default_is_the_storage_default() -> None:
    from tea.storage.duckdb import ROW_GROUP_SIZE
    assert load({}, env={}).duckdb.row_group_size == ROW_GROUP_SIZE
