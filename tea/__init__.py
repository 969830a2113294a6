"""TEA, the Telemetry & Event Recorder."""

__version__ = "0.1.0"

__all__ = ["__version__"]
