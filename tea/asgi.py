"""``tea.asgi:app`` — TEA for any ASGI server (settings from the environment / TEA_CONFIG).

``tea serve`` is the supported way to run TEA; this entry point exists for deployments that
standardise on another ASGI server, e.g. ``uvicorn tea.asgi:app`` or ``granian --interface asgi
tea.asgi:app``. Run one worker: the app owns the data directory.
"""
from tea.app import TeaApp
from tea.settings import load

app = TeaApp(load())
