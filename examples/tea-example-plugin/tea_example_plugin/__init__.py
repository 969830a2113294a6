"""An example TEA plugin, found through the ``tea.plugins`` entry point.

* validator ``no_forbidden_flag``: refuses events whose attributes say ``"forbidden": true``;
* processor ``example_sink``: appends every committed event as a line of NDJSON to the file named by
  ``TEA_EXAMPLE_SINK`` (no file: no processor). While a file ``<sink>.fail`` exists it raises, to show
  retries and the dead-letter queue.
"""
from __future__ import annotations

import json
import os

from tea.hookspecs import hookimpl
from tea.pipeline.stages import Invalid


def no_forbidden_flag(event):
    if b'"forbidden":true' in bytes(event.attributes).replace(b" ", b""):
        raise Invalid("forbidden_flag", "events marked forbidden are not accepted", "attributes.forbidden")
    return event


def make_sink(path):
    async def example_sink(events):
        if os.path.exists(path + ".fail"):
            raise RuntimeError("the example sink is switched to fail")
        with open(path, "a") as fh:
            for event in events:
                fh.write(json.dumps({"event_id": event.event_id, "tenant_id": event.tenant_id,
                                     "event_type": event.event_type}) + "\n")
    return example_sink


@hookimpl
def register_validators(settings):
    return [no_forbidden_flag]


@hookimpl
def register_processors(settings):
    path = os.environ.get("TEA_EXAMPLE_SINK")
    return [("example_sink", make_sink(path))] if path else []
