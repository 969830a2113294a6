"""The SQL compiler: every query of the SQL backends written once (``events``: filters, tenant scope, pages,
time buckets, aggregates and quantiles; ``comms``: the communication views; ``signals``: metric points and
log records), with a small ``Dialect`` a backend for what it writes otherwise."""
from tea.storage.sql.dialect import FLOAT_COLUMNS, Dialect

__all__ = ["FLOAT_COLUMNS", "Dialect"]
