"""Every plugin hook. TEA's own validators, routes and storage backends are plugins too
(tea/builtins.py), registered through these same hooks; third-party plugins are found through the
``tea.plugins`` entry-point group.

Stages are plain callables ``Stage = Callable[[Event], Event]``: return the (possibly changed)
event, raise ``Invalid`` to refuse it (reported per item), or raise ``Drop`` to discard it
(counted, never silent). Processors are ``(name, async callable(list[Event]) -> None)`` and see
batches after storage committed them; a processor that keeps failing sends the batch to the DLQ.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from tea.services import Services
    from tea.settings import Settings

hookspec = pluggy.HookspecMarker("tea")
hookimpl = pluggy.HookimplMarker("tea")


@hookspec
def register_validators(settings: "Settings") -> list[Any]:
    """Return validator stages to run, in order, on every event before it is acknowledged."""


@hookspec
def register_processors(settings: "Settings", storage: Any) -> list[tuple[str, Any]]:
    """Return ``(name, async callable(events))`` processors to run on batches after ``storage`` committed them.

    Each processor is a consumer of TEA's durable log with its own position (kept across restarts, under
    the data directory, by ``name``: renaming a processor starts it afresh from what is stored next). It
    reads only what storage has committed, at its own pace — ingestion never waits for it; while it lags,
    the log keeps what it has not read (the buffer's bound counts it). Delivery is **at least once**: a
    batch is handed over again after a crash or kill before the processor's position moved past it, and a
    client's resend of an event (same ``(tenant_id, event_id)``) is a new log record, handed over again too.
    Make effects idempotent: derive ids from ``(tenant_id, event_id)`` (as the built-in projections do), or
    set ``takes_delivery = True`` to be called ``fn(events, delivery)`` with ``delivery.log_id`` and
    ``delivery.positions`` — each event's ``(segment, offset, index)`` in the log, the same on every
    redelivery and growing within one log — and store the last position applied in the same write as the
    effect. Optional attributes: ``wants(line) -> bool`` / ``wants_any(ndjson) -> bool`` select the NDJSON
    lines to decode, or ``wants_lines = (required, any_of)`` (bytes, tuple of bytes) in their place: the lines
    holding ``required`` and any of ``any_of``, found by ``tea.scan.select_lines`` in a worker thread;
    ``event_types`` (a set) skips records known to hold none of those types; ``batch_size`` /
    ``batch_timeout_s`` override the ``processing.*`` batching;
    ``takes_ndjson = True`` hands it a ``tea.types.Batch`` of the committed lines (decoded only if iterated). A
    processor long at work awaits ``tea.pipeline.consume.give_way()`` between slices of it. A batch
    that still fails after ``processing.retry_attempts`` tries goes to the dead-letter queue and the
    processor moves on; ``POST /v1/dlq/{id}/replay`` calls it again with the events alone."""


@hookspec
def register_routes(services: "Services") -> list[Any]:
    """Return ``tea.http.Route``s to serve: receivers (a wire format into events for
    ``services.ingestor``), reads (through ``services.readers``, scoped to the caller's tenant), anything.
    ``services`` is what the composition root built (``tea.services.Services``); ``tea.services.provide``
    calls a ``routes(...)`` function with the services its parameters name. TEA's own routes come first."""


@hookspec(firstresult=True)
def register_storage(settings: "Settings") -> Any:
    """Return a Storage for ``settings.storage_backend``, or None when that backend is not yours."""


@hookspec
def storage_backends() -> list[str]:
    """Return the ``storage_backend`` names your ``register_storage`` answers (listed when none answers)."""
