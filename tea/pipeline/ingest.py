"""The one path every receiver hands its events to: normalise, then the durable buffer."""
from __future__ import annotations

from dataclasses import dataclass

from tea.buffer.log import DurableBuffer
from tea.errors import Unavailable
from tea.ops.telemetry import Telemetry
from tea.pipeline.normalise import ItemError, Normaliser
from tea.receive.decode import Decoded
from tea.types import Event, encode_lines


@dataclass
class Outcome:
    accepted: list[Event]
    errors: list[ItemError]
    total: int


class Ingestor:
    def __init__(self, buffer: DurableBuffer, normaliser: Normaliser, telemetry: Telemetry | None = None) -> None:
        self.buffer = buffer
        self.normaliser = normaliser
        self.telemetry = telemetry or Telemetry()

    async def submit(self, decoded: Decoded, source_protocol: str, tenant_id: str | None = None) -> Outcome:
        """Normalise and make durable; returns once acknowledged-safe. Raises Unavailable (503)."""
        accepted, errors, low, high = self.normaliser(decoded.events, decoded.indexes, source_protocol, tenant_id)
        if decoded.errors:
            errors = sorted(decoded.errors + errors, key=lambda e: e.index)
        t = self.telemetry
        t.child(t.events_received, source_protocol).inc(decoded.total)
        for error in errors:
            t.child(t.events_rejected, source_protocol, error.error).inc()
        if accepted:
            try:
                await self.buffer.append(encode_lines(accepted), len(accepted), low, high)
            except Unavailable as exc:
                t.child(t.events_rejected, source_protocol, exc.code).inc(len(accepted))
                raise
            t.child(t.events_accepted, source_protocol).inc(len(accepted))
        return Outcome(accepted, errors, decoded.total)
