"""Storage backends behind one Protocol (``tea.plugins.make_storage`` picks one from the settings): an
event store and the small stores beside it (``tea.storage.base``), optional capabilities
(``tea.storage.capabilities``), one package a backend."""
from tea.storage.base import (AuditStore, DeadLetterStore, DocumentStore, EventStore, ProjectionStore, Storage,
                              TokenStore)

__all__ = ["AuditStore", "DeadLetterStore", "DocumentStore", "EventStore", "ProjectionStore", "Storage", "TokenStore"]
