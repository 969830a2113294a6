"""The durable buffer: append-only segment files with group commit, drained by the writer."""
from tea.buffer.log import DurableBuffer, Position
from tea.buffer.writer import Writer

__all__ = ["DurableBuffer", "Position", "Writer"]
