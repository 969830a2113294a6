"""The in-memory backend: the seed's semantics (oldest evicted past ``max_events``), and tests."""
from tea.storage.memory.store import MemoryStorage, select

__all__ = ["MemoryStorage", "select"]
