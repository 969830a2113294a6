"""OTLP metric points and log records as typed values: the rows, and the series arithmetic over them."""
