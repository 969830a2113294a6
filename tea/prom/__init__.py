"""The Prometheus HTTP query API over TEA's event metrics and OTLP metric points (docs/grafana.md)."""
