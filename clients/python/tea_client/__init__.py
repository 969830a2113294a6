"""tea-client: the Python SDK of TEA, the Telemetry & Event Recorder.

``TeaClient`` / ``AsyncTeaClient`` record events without blocking or failing the application;
``tea_client.elf`` is the ElfAutomations ``telemetry_client`` drop-in; ``tea_client.mcp`` records
every MCP request a server answers. See docs/sdk.md.
"""
from __future__ import annotations

from typing import Any, Optional

from tea_client._version import __version__
from tea_client.client import AsyncTeaClient, TeaClient, default_client, do_not_track
from tea_client.timing import Timed

__all__ = ["AsyncTeaClient", "TeaClient", "Timed", "__version__", "default_client", "do_not_track", "record",
           "timed", "track_command", "track_feature"]


def record(event_type: str, **fields: Any) -> None:
    """``default_client().record(...)``: the process-wide client from the environment."""
    default_client().record(event_type, **fields)


def timed(event_type: str, **fields: Any) -> Timed:
    return default_client().timed(event_type, **fields)


def track_command(command: str, success: Optional[bool] = None, duration_ms: Optional[float] = None,
                  exit_code: Optional[int] = None, **kwargs: Any) -> None:
    """telemetry-kit's ``track_command`` on the process-wide client."""
    default_client().track_command(command, success, duration_ms, exit_code, **kwargs)


def track_feature(feature: str, method: Optional[str] = None, success: Optional[bool] = None, **data: Any) -> None:
    """telemetry-kit's ``track_feature`` on the process-wide client."""
    default_client().track_feature(feature, method, success, **data)
