"""Identity: who is calling (Principal), how that is decided (the authenticator chain), and the
abuse protection around it (signatures, replay, rate limits, quotas)."""
from tea.auth.principal import ADMIN, READ, SCOPES, WRITE, Principal

__all__ = ["ADMIN", "READ", "SCOPES", "WRITE", "Principal"]
