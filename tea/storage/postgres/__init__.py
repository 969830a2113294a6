"""The PostgreSQL backend, for teams that already run PostgreSQL.

``store`` is the backend (events, partitions, reads, retention), ``stores`` the small stores (tokens,
audit, dead letters, documents and records, projections), ``sql`` the query compiler, ``signals`` metric
points and log records."""
from tea.storage.postgres.store import PostgresStorage, partition_name

__all__ = ["PostgresStorage", "partition_name"]
