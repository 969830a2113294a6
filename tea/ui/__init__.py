"""The Control Center: the web UI at ``/ui`` (routes, session, templates, static) and the live tail
(``GET /v1/events/stream``, stream.py)."""
