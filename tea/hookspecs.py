"""Every plugin hook. TEA's own validators, routes and storage backends are plugins too
(tea/builtins.py), registered through these same hooks; third-party plugins are found through the
``tea.plugins`` entry-point group.

Stages are plain callables ``Stage = Callable[[Event], Event]``: return the (possibly changed)
event, raise ``Invalid`` to refuse it (reported per item), or raise ``Drop`` to discard it
(counted, never silent). Processors are ``(name, async callable(list[Event]) -> None)`` and see
batches after storage committed them; a processor that keeps failing sends the batch to the DLQ.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from tea.services import Services
    from tea.settings import Settings

hookspec = pluggy.HookspecMarker("tea")
hookimpl = pluggy.HookimplMarker("tea")


@hookspec
def register_validators(settings: "Settings") -> list[Any]:
    """Return validator stages to run, in order, on every event before it is acknowledged."""


@hookspec
def register_processors(settings: "Settings", storage: Any) -> list[tuple[str, Any]]:
    """Return ``(name, async callable(events))`` processors to run on batches after ``storage`` committed them."""


@hookspec
def register_routes(services: "Services") -> list[Any]:
    """Return ``tea.http.Route``s to serve: receivers (a wire format into events for
    ``services.ingestor``), reads (through ``services.readers``, scoped to the caller's tenant), anything.
    ``services`` is what the composition root built (``tea.services.Services``); ``tea.services.provide``
    calls a ``routes(...)`` function with the services its parameters name. TEA's own routes come first."""


@hookspec(firstresult=True)
def register_storage(settings: "Settings") -> Any:
    """Return a Storage for ``settings.storage_backend``, or None when that backend is not yours."""


@hookspec
def storage_backends() -> list[str]:
    """Return the ``storage_backend`` names your ``register_storage`` answers (listed when none answers)."""
