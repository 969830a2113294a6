"""Time a block or a function and record its outcome: ``with client.timed("job"):`` or ``@client.timed("job")``."""
from __future__ import annotations

import functools
import inspect
import time
from typing import Any, Callable, Dict, Optional, Type

Record = Callable[..., None]
_MAX_MESSAGE = 1000


class Timed:
    """One event per ``with`` block (or ``async with``) or per call of a decorated function: ``duration_ms``,
    ``status`` (``ok``, or ``error`` with ``error_type`` and ``error_message`` when an exception escapes —
    the exception is never swallowed). ``set(**fields)`` adds fields from inside the block."""

    def __init__(self, record: Record, event_type: str, fields: Dict[str, Any]) -> None:
        self._record, self.event_type, self.fields = record, event_type, dict(fields)
        self._start: Optional[float] = None

    def set(self, **fields: Any) -> "Timed":
        self.fields.update(fields)
        return self

    @property
    def duration_ms(self) -> float:
        """Milliseconds since the block started (0 before)."""
        return 0.0 if self._start is None else (time.perf_counter() - self._start) * 1000.0

    def __enter__(self) -> "Timed":
        self._start = time.perf_counter()
        return self

    def __exit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException], tb: Any) -> None:
        duration_ms = self.duration_ms
        fields = dict(self.fields)
        fields.setdefault("duration_ms", duration_ms)
        if exc is None:
            fields.setdefault("status", "ok")
        else:
            fields.setdefault("status", "cancelled" if _cancelled(exc) else "error")
            fields.setdefault("error_type", type(exc).__name__)
            fields.setdefault("error_message", str(exc)[:_MAX_MESSAGE] or type(exc).__name__)
        self._record(self.event_type, **fields)

    async def __aenter__(self) -> "Timed":
        return self.__enter__()

    async def __aexit__(self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException],
                        tb: Any) -> None:
        self.__exit__(exc_type, exc, tb)

    def __call__(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """As a decorator: each call is timed on its own (a fresh ``Timed``)."""
        record, event_type = self._record, self.event_type
        fields = {"method": getattr(fn, "__qualname__", None), **self.fields}
        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                with Timed(record, event_type, fields):
                    return await fn(*args, **kwargs)
            return run_async

        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            with Timed(record, event_type, fields):
                return fn(*args, **kwargs)
        return run


def _cancelled(exc: BaseException) -> bool:
    import asyncio
    return isinstance(exc, asyncio.CancelledError)
