"""A ClickHouse URL TEA cannot speak to is refused before any connection, with the URL to use."""
from __future__ import annotations

import pytest

from tea.errors import ConfigError
from tea.storage.clickhouse import ClickHouseStorage, check_url
from tests.conftest import make_settings


@pytest.mark.parametrize("url, suggested", [
    ("http://ch:8123", "clickhouse://ch:9000/default"),
    ("http://tea:secret@ch:8123/tea", "clickhouse://tea:***@ch:9000/tea"),
    ("https://default@abc.clickhouse.cloud:8443/db", "clickhouses://default@abc.clickhouse.cloud:9440/db"),
])
def test_the_http_interface_is_refused_with_the_native_url(tmp_path, url: str, suggested: str) -> None:
    with pytest.raises(ConfigError) as info:
        ClickHouseStorage.from_settings(make_settings(tmp_path, storage_backend="clickhouse", clickhouse_url=url))
    assert info.value.args[0].endswith("use " + suggested) and "secret" not in str(info.value)


def test_other_schemes() -> None:
    with pytest.raises(ConfigError, match="must start with clickhouse://"):
        check_url("tcp://ch:9000")
    with pytest.raises(ConfigError, match="must start with clickhouse://"):
        check_url("ch:9000")
    check_url("clickhouse://ch:9000/tea")
    check_url("clickhouses://ch:9440/tea")
