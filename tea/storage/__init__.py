"""Storage backends behind one Protocol (``tea.plugins.make_storage`` picks one from the settings)."""
from tea.storage.base import Storage

__all__ = ["Storage"]
