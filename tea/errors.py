"""One error hierarchy; every client error carries its HTTP status and a stable code.

The JSON error shape everywhere is ``{"error": code, "message": text, "details": {...}}``; ``details`` is
always there (``{}`` when there is nothing to add).
"""
from __future__ import annotations

from typing import Any


class TeaError(Exception):
    """Base of every error TEA raises on purpose."""


class ConfigError(TeaError):
    """An invalid setting; the message is one line naming the key and the accepted values."""


class ClientError(TeaError):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, details: Any = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message, "details": {} if self.details is None else self.details}


class BadRequest(ClientError):
    status = 400
    code = "bad_request"


class InvalidParameter(BadRequest):
    """A query or path parameter is not as its route declares it: 400 ``invalid_parameter`` naming it."""

    code = "invalid_parameter"

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message, details={"parameter": parameter})
        self.parameter = parameter


class Unauthorized(ClientError):
    status = 401
    code = "unauthorized"


class Forbidden(ClientError):
    status = 403
    code = "forbidden"


class NotFound(ClientError):
    status = 404
    code = "not_found"


class Conflict(ClientError):
    status = 409
    code = "conflict"


class MethodNotAllowed(ClientError):
    status = 405
    code = "method_not_allowed"


class TooLarge(ClientError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(ClientError):
    status = 415
    code = "unsupported_media_type"


class RateLimited(ClientError):
    status = 429
    code = "rate_limit_exceeded"

    def body(self) -> dict[str, Any]:
        out = super().body()
        if isinstance(self.details, dict) and "retry_after" in self.details:
            out["retry_after"] = self.details["retry_after"]  # where telemetry-kit clients read it
        return out


class Unavailable(ClientError):
    """The service cannot take the request now (buffer full, not ready); retry after a while."""

    status = 503
    code = "unavailable"

    def __init__(self, message: str, *, retry_after_s: int = 1, code: str | None = None,
                 details: Any = None) -> None:
        super().__init__(message, code=code, details=details,
                         headers={"retry-after": str(retry_after_s)})
        self.retry_after_s = retry_after_s


class BufferFull(Unavailable):
    code = "buffer_full"


class StorageError(TeaError):
    """A storage backend failed; the writer retries with backoff."""


class StorageDataError(StorageError):
    """The backend refused the data itself (not a transient failure); the writer isolates the bad events."""


class StorageUnavailable(StorageError, Unavailable):
    """The storage server cannot be reached, refused the connection or did not answer in time.

    A ``StorageError`` (the writer retries it) and an ``Unavailable`` (a read answers 503 with
    ``Retry-After``, in its protocol's error shape). ``str()`` keeps the driver's text for the log;
    the client reads only ``message``, which names no host."""

    code = "storage_unavailable"

    def __init__(self, detail: str, *, retry_after_s: int = 1) -> None:
        super().__init__("storage is unavailable; retry later", retry_after_s=retry_after_s)
        self.args = (detail,)
