"""ElfAutomations' ``telemetry_client``, as a drop-in that writes to TEA's communications.

Change the import and nothing else::

    # from elf_automations.shared.telemetry import telemetry_client
    from tea_client.elf import telemetry_client

    start = telemetry_client.start_timer()
    ...
    await telemetry_client.record_mcp(source_id="marketing-team", mcp_name="github", tool_name="create_issue",
                                      status="success", duration_ms=telemetry_client.calculate_duration_ms(start))

``record_a2a`` / ``record_mcp`` / ``record_n8n`` take the seed's arguments, by the same names and
defaults, and make the same ``communication_telemetry`` row (``POST /v1/communications``). They queue
the row and return at once: ``await`` them as the seed's coroutines were awaited, or call them
without ``await`` from synchronous code — either works. Like the seed, the client is off when it
has nowhere to send (no ``TEA_ENDPOINT``), and errors never reach the caller.
"""
from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Coroutine
from typing import Any, Dict, Iterator, Optional

from tea_client.client import TeaClient

log = logging.getLogger(__name__)


class Recorded(Coroutine):  # type: ignore[type-arg]
    """What the ``record_*`` methods return: the row is already queued; this is a finished coroutine, so
    ``await``, ``asyncio.create_task()`` and ``asyncio.run()`` take it as they took the seed's, and
    synchronous code can drop it (it is not a native coroutine: no "never awaited" warning)."""

    __slots__ = ()

    def send(self, value: Any) -> Any:
        raise StopIteration(None)

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        raise typ if val is None else val

    def close(self) -> None:
        pass

    def __await__(self) -> Iterator[None]:
        return iter(())


_DONE = Recorded()


class TelemetryClient:
    """The seed's ``TelemetryClient``, sending to TEA. Without arguments it reads ``TEA_ENDPOINT``,
    ``TEA_TOKEN`` and ``TEA_SECRET``; ``client`` shares an existing ``TeaClient``; other keyword arguments
    go to the ``TeaClient`` it makes on first use."""

    def __init__(self, endpoint: Optional[str] = None, token: Optional[str] = None, secret: Optional[str] = None,
                 client: Optional[TeaClient] = None, **client_kwargs: Any) -> None:
        self._client = client
        self._args = dict(endpoint=endpoint, token=token, secret=secret, **client_kwargs)
        self._lock = threading.Lock()

    @property
    def client(self) -> TeaClient:
        """The ``TeaClient`` underneath, made on first use (disabled when there is no endpoint)."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    endpoint = self._args.get("endpoint") or os.environ.get("TEA_ENDPOINT")
                    if not endpoint:
                        log.info("Telemetry disabled - no TEA endpoint (set TEA_ENDPOINT)")
                    self._client = TeaClient(**{**self._args, "enabled": bool(endpoint) and self._args.get(
                        "enabled", True)})
        return self._client

    def _row(self, row: Dict[str, Any]) -> Recorded:
        try:
            for key in ("duration_ms", "tokens_used"):
                if isinstance(row.get(key), float):  # TEA's columns are INTEGER, as the seed's
                    row[key] = int(round(row[key]))
            self.client.record_communication(**row)
        except Exception as exc:  # the seed's contract: telemetry never breaks the application
            log.debug("Telemetry error (ignored): %s", exc)
        return _DONE

    def record_a2a(self, source_team: str, target_team: str, operation: str = "send_task",
                   task_description: Optional[str] = None, status: str = "success",
                   duration_ms: Optional[int] = None, error_message: Optional[str] = None,
                   correlation_id: Optional[str] = None, metadata: Optional[Dict[str, Any]] = None) -> Recorded:
        """Record an agent-to-agent call (team → team)."""
        return self._row({
            "protocol": "a2a", "source_id": source_team, "source_type": "team", "target_id": target_team,
            "target_type": "team", "operation": operation, "status": status, "duration_ms": duration_ms,
            "task_description": task_description[:500] if task_description else None,
            "error_message": error_message, "correlation_id": correlation_id or str(uuid.uuid4()),
            "metadata": metadata or {}})

    def record_mcp(self, source_id: str, source_type: str = "team", mcp_name: Optional[str] = None,
                   tool_name: Optional[str] = None, operation: str = "tool_call", status: str = "success",
                   duration_ms: Optional[int] = None, tokens_used: Optional[int] = None,
                   error_message: Optional[str] = None, correlation_id: Optional[str] = None,
                   metadata: Optional[Dict[str, Any]] = None) -> Recorded:
        """Record an MCP tool call (source → MCP server)."""
        return self._row({
            "protocol": "mcp", "source_id": source_id, "source_type": source_type,
            "target_id": mcp_name or "unknown", "target_type": "mcp", "operation": operation,
            "tool_name": tool_name, "status": status, "duration_ms": duration_ms, "tokens_used": tokens_used,
            "error_message": error_message, "correlation_id": correlation_id or str(uuid.uuid4()),
            "metadata": metadata or {}})

    def record_n8n(self, workflow_id: str, workflow_name: str, node_name: str, target_service: str,
                   operation: str = "workflow_step", status: str = "success", duration_ms: Optional[int] = None,
                   error_message: Optional[str] = None, correlation_id: Optional[str] = None,
                   metadata: Optional[Dict[str, Any]] = None) -> Recorded:
        """Record an n8n workflow step (workflow → external service)."""
        return self._row({
            "protocol": "n8n", "source_id": workflow_id, "source_type": "workflow", "target_id": target_service,
            "target_type": "external", "operation": operation, "workflow_id": workflow_id,
            "workflow_name": workflow_name, "workflow_node": node_name, "status": status,
            "duration_ms": duration_ms, "error_message": error_message,
            "correlation_id": correlation_id or str(uuid.uuid4()), "metadata": metadata or {}})

    def start_timer(self) -> float:
        """Start a timer for duration tracking (seconds, as the seed's ``time.time()``)."""
        return time.time()

    def calculate_duration_ms(self, start_time: float) -> int:
        """Whole milliseconds since ``start_time``."""
        return int((time.time() - start_time) * 1000)

    def flush(self, timeout: float = 5.0) -> bool:
        return self.client.flush(timeout)

    def close(self, timeout: float = 5.0) -> bool:
        return self.client.close(timeout)

    def stats(self) -> Dict[str, Any]:
        return self.client.stats()


# the seed's module singleton; its TeaClient (and sender thread) is made on first use, not at import
telemetry_client = TelemetryClient()


class TelemetryTimer:
    """The seed's context manager for timing operations: ``with TelemetryTimer() as t: ...; t.duration_ms``."""

    def __init__(self, client: Optional[TelemetryClient] = None) -> None:
        self.client = client or telemetry_client
        self.start_time: Optional[float] = None

    def __enter__(self) -> "TelemetryTimer":
        self.start_time = self.client.start_timer()
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    @property
    def duration_ms(self) -> int:
        """Milliseconds since the block started (0 before)."""
        if self.start_time:
            return self.client.calculate_duration_ms(self.start_time)
        return 0
