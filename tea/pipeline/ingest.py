"""The one path every receiver hands its events to: normalise, then the durable buffer."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from tea.buffer.log import DurableBuffer
from tea.errors import Unavailable
from tea.pipeline.normalise import ItemError, Normaliser
from tea.receive.decode import Decoded
from tea.types import Event, encode_lines


@dataclass
class IngestStats:
    """Counts of every event received, accepted and rejected (by reason and protocol)."""

    received: Counter[str] = field(default_factory=Counter)
    accepted: Counter[str] = field(default_factory=Counter)
    rejected: Counter[tuple[str, str]] = field(default_factory=Counter)  # (protocol, reason)


@dataclass
class Outcome:
    accepted: list[Event]
    errors: list[ItemError]
    total: int


class Ingestor:
    def __init__(self, buffer: DurableBuffer, normaliser: Normaliser, stats: IngestStats | None = None) -> None:
        self.buffer = buffer
        self.normaliser = normaliser
        self.stats = stats or IngestStats()

    async def submit(self, decoded: Decoded, source_protocol: str, tenant_id: str | None = None) -> Outcome:
        """Normalise and make durable; returns once acknowledged-safe. Raises Unavailable (503)."""
        accepted, errors, low, high = self.normaliser(decoded.events, decoded.indexes, source_protocol, tenant_id)
        if decoded.errors:
            errors = sorted(decoded.errors + errors, key=lambda e: e.index)
        stats = self.stats
        stats.received[source_protocol] += decoded.total
        for error in errors:
            stats.rejected[(source_protocol, error.error)] += 1
        if accepted:
            try:
                await self.buffer.append(encode_lines(accepted), len(accepted), low, high)
            except Unavailable as exc:
                stats.rejected[(source_protocol, exc.code)] += len(accepted)
                raise
            stats.accepted[source_protocol] += len(accepted)
        return Outcome(accepted, errors, decoded.total)
