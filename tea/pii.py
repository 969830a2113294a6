"""The seed's sanitisation defaults (CONTRACTS.md 1.4), shared by the settings (``pii.keys``'s default)
and the redaction stage: these keys, and any key containing password/token/key/secret."""

DEFAULT_PII_KEYS = ("password", "passwd", "pwd", "secret", "token", "api_key", "apikey", "authorization", "auth",
                    "credential", "private_key", "session_token", "access_token", "refresh_token", "bearer",
                    "email", "ssn", "credit_card")
DEFAULT_PII_CONTAINS = ("password", "token", "key", "secret")
REDACTED = "[REDACTED]"
