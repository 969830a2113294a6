"""The ``tea`` command: ``serve``, ``config``, ``migrate``, ``version``."""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Any, Callable, Literal, Sequence

from tea import __version__
from tea.errors import ConfigError
from tea.settings import SETTINGS, Settings, load, unknown_env

log = logging.getLogger("tea")


def _add_setting_flags(parser: argparse.ArgumentParser) -> None:
    for setting in SETTINGS:  # those declared with flag=True, e.g. --port, --data-dir, --otlp-grpc-port
        if setting.flag:
            default = "" if setting.default is None else f", default {setting.default}"
            parser.add_argument(setting.flag_name, dest=setting.key, metavar=setting.key.rsplit(".")[-1].upper(),
                                help=f"{setting.help} ({setting.env}{default})".replace("%", "%%"))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tea", description="TEA, the Telemetry & Event Recorder")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the server")
    _add_setting_flags(serve)
    config = sub.add_parser("config", help="print the effective settings (secrets masked) and where each comes from")
    _add_setting_flags(config)
    config.add_argument("--markdown", action="store_true",
                        help="print the table of every setting (as in docs/configuration.md) instead")
    sub.add_parser("version", help="print the version")
    migrate = sub.add_parser("migrate", help="postgres backend: apply the schema migrations (or print them with --sql)")
    _add_setting_flags(migrate)
    migrate.add_argument("--sql", action="store_true", help="print the DDL instead of applying it (no database needed)")
    migrate.add_argument("--revision", default="head", help="migrate up to this revision (default: the newest)")
    usage = sub.add_parser("usage", help="usage and billing of a running server (GET /v1/usage)")
    usage.add_argument("--url", help="TEA's base URL (default http://TEA_HOST:TEA_PORT)")
    usage.add_argument("--tenant", help="one tenant (default: every tenant)")
    when = usage.add_mutually_exclusive_group()
    when.add_argument("--month", help="a calendar month, e.g. 2026-11 (period=month)")
    when.add_argument("--start", help="start time (RFC 3339 or epoch ms); with --end and --period")
    usage.add_argument("--end", help="end time (default: now)")
    usage.add_argument("--period", choices=("day", "month"), help="rows per day or per month (default month)")
    usage.add_argument("--format", choices=("json", "csv"), default="json")
    usage.add_argument("--token", help="an API token or JWT with events:read (default: $TEA_TOKEN)")
    from tea import token_cli
    token_cli.add_parser(sub)
    plugins = sub.add_parser("plugins", help="list the plugins loaded and what each provides")
    _add_setting_flags(plugins)
    dlq = sub.add_parser("dlq", help="the dead-letter queue of a running server")
    dlq_actions = dlq.add_subparsers(dest="action", required=True)
    for name, text in (("list", "list entries"), ("replay", "replay entries (all pending, or --id)")):
        action = dlq_actions.add_parser(name, help=text)
        action.add_argument("--url", help="TEA's base URL (default http://TEA_HOST:TEA_PORT)")
        action.add_argument("--admin-token", help="an admin credential (default: $TEA_ADMIN_TOKEN)")
        if name == "replay":
            action.add_argument("--id", help="one entry (default: every pending entry)")
    export = sub.add_parser("export", help="export events of a running server into a file (GET /v1/export)")
    export.add_argument("--url", help="TEA's base URL (default http://TEA_HOST:TEA_PORT)")
    export.add_argument("--format", choices=("ndjson", "csv", "parquet"), default="ndjson")
    export.add_argument("-o", "--output", required=True, help="file to write")
    export.add_argument("--quiet", action="store_true", help="no progress bar")
    export.add_argument("--token", help="an API token or JWT with events:read (default: $TEA_TOKEN)")
    export.add_argument("--tenant", dest="tenant_id", help="only this tenant")
    from tea.remote import EQUALS

    for name in EQUALS:
        export.add_argument("--" + name.replace("_", "-"), dest=name, help=f"only events with this {name}")
    export.add_argument("--start", dest="start_time", help="events at or after (RFC 3339 or epoch ms)")
    export.add_argument("--end", dest="end_time", help="events before (RFC 3339 or epoch ms)")
    return parser


def _flags(args: argparse.Namespace) -> dict[str, Any]:
    return {s.key: getattr(args, s.key, None) for s in SETTINGS if s.flag}  # None: not given, or not offered


def _load(args: argparse.Namespace) -> Settings:
    try:
        return load(_flags(args))
    except ConfigError as exc:
        print(f"tea: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def cmd_serve(settings: Settings) -> int:
    import uvicorn

    from tea import logs
    from tea.app import TeaApp

    logs.configure(settings.log_level, settings.log_format)
    for name in unknown_env():
        log.warning("ignoring environment variable %s: it names no TEA setting", name)
    for warning in settings.warnings:
        log.warning("%s", warning)
    from tea.http import limits
    from tea.listen import bind

    extra_port = settings.otlp.http_port
    try:
        sockets = [bind(settings.host, settings.port, "--port, TEA_PORT")]
        if extra_port and extra_port != settings.port:
            sockets.append(bind(settings.host, extra_port, "--otlp-http-port, TEA_OTLP__HTTP_PORT"))
    except ConfigError as exc:  # a port in use: one line and an exit code, before anything starts
        print(f"tea: {exc}", file=sys.stderr)
        return 1
    before, open_files = limits.raise_open_files_limit()  # before storage and the buffer open their files
    try:
        app = TeaApp(settings)
    except ConfigError as exc:  # e.g. a storage_backend no plugin provides: one line, not a traceback
        print(f"tea: {exc}", file=sys.stderr)
        return 2
    limits.log_bounds(settings, before, open_files)
    config = _uvicorn_configs(settings, app)
    main_config = config(settings.port, "on")
    server = make_server(main_config, app)
    if len(sockets) == 1:
        server.run(sockets=sockets)
        return 0 if server.started else 1
    # OTLP/HTTP's conventional port serves the same app (no second lifespan), stopping with the main server
    otlp = _Quiet(config(extra_port, "off"))
    import asyncio

    async def both() -> None:
        main = asyncio.create_task(server.serve(sockets=sockets[:1]))
        while not server.started and not main.done():
            await asyncio.sleep(0.02)
        second = asyncio.create_task(otlp.serve(sockets=sockets[1:])) if server.started else None
        await main
        if second is not None:
            otlp.should_exit = True
            await second

    from uvicorn._compat import asyncio_run
    asyncio_run(both(), loop_factory=main_config.get_loop_factory())
    return 0 if server.started else 1


def _uvicorn_configs(settings: Settings, app: Any) -> Callable[[int, Literal["on", "off"]], Any]:
    """uvicorn's config of each HTTP port (uvloop, httptools), every port behind one HTTP edge: they
    share its connection bound."""
    import uvicorn

    from tea.http.edge import make_edge
    edge = make_edge(settings, app.telemetry.registry)

    def config(port: int, lifespan: Literal["on", "off"]) -> uvicorn.Config:
        return uvicorn.Config(app, host=settings.host, port=port, loop="uvloop", http=edge.protocol(), ws="none",
                              lifespan=lifespan, access_log=settings.access_log, log_config=None,
                              server_header=False, timeout_graceful_shutdown=max(1, int(settings.shutdown_timeout_s)))
    return config


def make_server(config: Any, app: Any) -> Any:
    """A uvicorn Server that ends the app's live-tail streams as it starts to shut down: an open stream
    never finishes by itself, so it would hold the graceful shutdown until its timeout."""
    import uvicorn

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: Any = None) -> None:
            app.live.close()
            await super().shutdown(sockets)
    return Server(config)


class _Quiet:
    """A uvicorn Server that leaves signal handling to the main server."""

    def __new__(cls, config):  # type: ignore[no-untyped-def]
        import contextlib

        import uvicorn

        class Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self):  # type: ignore[no-untyped-def]
                yield
        return Server(config)


def cmd_config(settings: Settings) -> int:
    rows = settings.effective(masked=True)
    width = max(len(key) for key, _, _ in rows)
    for key, value, source in rows:
        shown = "(unset)" if value is None else repr(value) if isinstance(value, str) else str(value).lower() \
            if isinstance(value, bool) else str(value)
        print(f"{key:<{width}} = {shown:<24} # {source}")
    return 0


def _base_url(args: argparse.Namespace) -> str:
    if args.url:
        return args.url
    settings = _load(argparse.Namespace())
    return f"http://{settings.host}:{settings.port}"


def cmd_usage(args: argparse.Namespace) -> int:
    from tea import remote

    params: dict[str, Any] = {"tenant_id": args.tenant, "format": args.format, "period": args.period}
    if args.month:
        params["start_time"], params["end_time"] = remote.month_range(args.month)
        params["period"] = args.period or "month"
    else:
        params["start_time"], params["end_time"] = args.start, args.end
    remote.usage(_base_url(args), params, sys.stdout.buffer)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from tea import remote

    filters = {name: getattr(args, name) for name in remote.FILTERS}
    rows, size, expected = remote.export(_base_url(args), args.format, filters, args.output,
                                         progress=not args.quiet)
    note = "" if rows == expected else f" ({expected} counted when the export started)"
    print(f"wrote {rows} rows, {size} bytes to {args.output}{note}", file=sys.stderr)
    return 0


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from tea import migrations

    if args.sql:
        sys.stdout.write(migrations.sql(args.revision))
        return 0
    if settings.storage_backend != "postgres":
        print(f"tea migrate: nothing to do for storage_backend={settings.storage_backend} (only postgres has "
              f"migrations to run; the others migrate themselves at start)", file=sys.stderr)
        return 0
    if not settings.postgres_url:
        print("tea migrate: set TEA_POSTGRES_URL (or ANALYTICS_DATABASE_URL)", file=sys.stderr)
        return 2
    from tea import logs
    logs.configure(settings.log_level, settings.log_format)
    try:
        before = migrations.current(settings.postgres_url)
        migrations.upgrade(settings.postgres_url, args.revision)
        after = migrations.current(settings.postgres_url)
    except Exception as exc:  # driver / Alembic errors: one line, not a traceback
        print(f"tea migrate: {exc}".splitlines()[0], file=sys.stderr)
        return 1
    print(f"schema at {after}" + (f" (was {before or 'empty'})" if before != after else " (already current)"))
    return 0


def cmd_plugins(settings: Settings) -> int:
    from tea.plugins import describe, make_plugin_manager

    pm = make_plugin_manager()
    for info in describe(pm):
        print(f"{info.name}  ({info.module}; {info.source})")
    stages = [getattr(s, "__name__", type(s).__name__) for group in pm.hook.register_validators(settings=settings)
              for s in group]
    processors = [name for group in pm.hook.register_processors(settings=settings, storage=None) for name, _ in group]
    print("validators:", ", ".join(stages) or "(none)")
    print("processors:", ", ".join(processors) or "(none)")
    backends = sorted({name for group in pm.hook.storage_backends() for name in group})
    print("storage:", settings.storage_backend, f"(available: {', '.join(backends)})")
    return 0


def cmd_dlq(args: argparse.Namespace, settings: Settings) -> int:
    import json
    import urllib.error
    import urllib.request

    base = (args.url or f"http://{settings.host}:{settings.port}").rstrip("/")
    credential = args.admin_token or settings.admin_token
    headers = {"authorization": f"Bearer {credential}"} if credential else {}

    def call(method: str, path: str) -> tuple[int, dict]:
        request = urllib.request.Request(base + path, method=method, headers=headers, data=b"" if method == "POST" else None)
        try:
            with urllib.request.urlopen(request, timeout=300) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    try:
        status, page = call("GET", "/v1/dlq?limit=10000")
        if status != 200:
            print(f"tea dlq: {status} {page.get('message', '')}", file=sys.stderr)
            return 1
        if args.action == "list":
            print(json.dumps(page, indent=2))
            return 0
        ids = [args.id] if args.id else [entry["id"] for entry in page["entries"]]
        failed = 0
        for entry_id in ids:
            status, result = call("POST", f"/v1/dlq/{entry_id}/replay")
            failed += status != 200
            print(json.dumps(result))
        return 1 if failed else 0
    except urllib.error.URLError as exc:
        print(f"tea dlq: cannot reach {base}: {exc.reason}", file=sys.stderr)
        return 1


def _remote_flags(args: argparse.Namespace) -> dict[str, str]:
    """The flag of `tea usage` / `tea export` that set each query parameter, to name in error messages."""
    from tea.remote import FILTERS

    flags = {name: "--" + name.replace("_", "-") for name in FILTERS}
    flags.update(tenant_id="--tenant", start_time="--start", end_time="--end", format="--format", period="--period")
    if getattr(args, "month", None):
        flags.update(start_time="--month", end_time="--month")
    return flags


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "version":
        print(f"tea {__version__}")
        return 0
    if args.command in ("usage", "export"):
        import os

        from tea import remote
        from tea.remote import RemoteError
        remote.TOKEN = args.token or os.environ.get("TEA_TOKEN")
        try:
            return cmd_usage(args) if args.command == "usage" else cmd_export(args)
        except RemoteError as exc:
            print(f"tea {args.command}: {exc.blaming(_remote_flags(args))}", file=sys.stderr)
            return 1
    if args.command == "config" and args.markdown:
        from tea.settings_doc import markdown
        sys.stdout.write(markdown())
        return 0
    settings = _load(args)
    if args.command == "token":
        from tea import token_cli
        return token_cli.run(args, settings)
    if args.command == "plugins":
        return cmd_plugins(settings)
    if args.command == "migrate":
        return cmd_migrate(args, settings)
    if args.command == "dlq":
        return cmd_dlq(args, settings)
    if args.command == "serve":
        return cmd_serve(settings)
    return cmd_config(settings)


if __name__ == "__main__":
    raise SystemExit(main())
