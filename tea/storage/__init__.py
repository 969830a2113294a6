"""Storage backends behind one Protocol; ``make_storage`` picks one from the settings."""
from tea.storage.base import Storage, make_storage

__all__ = ["Storage", "make_storage"]
