"""The scale-out backend: several stateless TEA nodes writing to one ClickHouse server or cluster.

``store`` is the backend (events, reads, retention), ``stores`` the small stores (tokens, audit, dead
letters, documents and records, projections), ``sql`` the schema and query compiler, ``signals`` metric
points and log records."""
from tea.storage.clickhouse.store import ClickHouseStorage, check_url

__all__ = ["ClickHouseStorage", "check_url"]
