"""``tea token create|list|revoke|rotate``: directly on the data directory (server stopped) or through
a running server (``--url`` with an admin credential)."""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import urllib.error
import urllib.request
from typing import Any

from tea.settings import Settings


def add_parser(sub: Any) -> None:
    token = sub.add_parser("token", help="manage API tokens (directly on the data dir, or with --url)")
    actions = token.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="create a token; prints its value and signing secret once")
    create.add_argument("--tenant", required=True)
    create.add_argument("--tier", default="free", choices=("free", "pro", "business", "enterprise"))
    create.add_argument("--scopes", help="comma list of events:write, events:read, admin (default: write,read)")
    create.add_argument("--org", help="telemetry-kit org id (UUID): the token is bound to it")
    create.add_argument("--app", help="telemetry-kit app id (UUID)")
    listing = actions.add_parser("list", help="list tokens (never their values)")
    listing.add_argument("--tenant")
    for name in ("revoke", "rotate"):
        action = actions.add_parser(name, help=f"{name} a token")
        action.add_argument("token_id")
    for action in actions.choices.values():
        action.add_argument("--url", help="a running server (default: work on the data dir directly)")
        action.add_argument("--admin-token", help="with --url: an admin credential (default: $TEA_ADMIN_TOKEN)")
        action.add_argument("--data-dir", dest="data_dir", help="the data dir (default ./tea-data, TEA_DATA_DIR)")
        action.add_argument("--config", help="a tea.toml")
        action.add_argument("--format", choices=("text", "json"), default="text")


def run(args: argparse.Namespace, settings: Settings) -> int:
    from tea.errors import ConfigError

    try:
        result = _remote(args, settings) if args.url else asyncio.run(_direct(args, settings))
    except (TokenCliError, ConfigError, OSError) as exc:  # e.g. a TEA_SECRET_KEY too short: one line
        print(f"tea token {args.action}: {exc}", file=sys.stderr)
        return 1
    _print(result, args.format)
    return 0


class TokenCliError(Exception):
    pass


async def _direct(args: argparse.Namespace, settings: Settings) -> Any:
    from tea.auth.keys import SecretBox, load_master_key
    from tea.ops.tokens import issued, token_view
    from tea.auth.tokens import TokenService
    from tea.errors import ClientError, StorageError
    from tea.plugins import make_storage
    from tea.timeutil import now_us
    from tea.types import AuditRecord

    storage = make_storage(settings)
    try:
        await storage.open()
    except StorageError as exc:
        raise TokenCliError(f"{exc} — is the server running? Then use --url") from None
    try:
        service = TokenService(storage, SecretBox(load_master_key(settings.secret_key, settings.data_dir)))
        if args.action == "list":
            return {"tokens": [token_view(r) for r in await service.list(args.tenant)]}
        if args.action == "create":
            made = await service.create(args.tenant, args.tier, _scopes(args), args.org, args.app)
            record, result = made.record, issued(made)
        elif args.action == "revoke":
            record = await service.revoke(args.token_id)
            result = token_view(record)
        else:
            made = await service.rotate(args.token_id)
            record, result = made.record, issued(made)
        # as the admin API does, so the audit log shows every change to the tokens, however made
        await storage.append_audit([AuditRecord(now_us(), f"token_{args.action}d",  # token_created, _revoked, _rotated
                                                "cli", record.tenant_id, None, True, None,
                                                {"token_id": record.token_id, "via": "cli", "os_user": _os_user()})])
        return result
    except ClientError as exc:
        raise TokenCliError(exc.message) from None
    finally:
        await storage.close()


def _os_user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no USER variable (some containers)
        return "unknown"


def _remote(args: argparse.Namespace, settings: Settings) -> Any:
    credential = args.admin_token or settings.admin_token
    if not credential:
        raise TokenCliError("--url needs an admin credential: --admin-token or TEA_ADMIN_TOKEN")
    base = args.url.rstrip("/")
    if args.action == "create":
        body = {"tenant_id": args.tenant, "tier": args.tier, "scopes": _scopes(args), "org_id": args.org,
                "app_id": args.app}
        return _call("POST", f"{base}/v1/tokens", credential, {k: v for k, v in body.items() if v is not None})
    if args.action == "list":
        query = f"?tenant_id={urllib.request.quote(args.tenant)}" if args.tenant else ""
        return _call("GET", f"{base}/v1/tokens{query}", credential)
    if args.action == "revoke":
        return _call("DELETE", f"{base}/v1/tokens/{args.token_id}", credential)
    return _call("POST", f"{base}/v1/tokens/{args.token_id}/rotate", credential)


def _call(method: str, url: str, credential: str, body: dict | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={
        "authorization": f"Bearer {credential}", "content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")
        raise TokenCliError(f"{exc.code} {exc.reason}: {detail}") from None
    except urllib.error.URLError as exc:
        raise TokenCliError(f"cannot reach {url}: {exc.reason}") from None


def _scopes(args: argparse.Namespace) -> list[str] | None:
    return [s.strip() for s in args.scopes.split(",") if s.strip()] if args.scopes else None


def _print(result: Any, fmt: str) -> None:
    import msgspec

    data = msgspec.to_builtins(result)
    if fmt == "json":
        print(json.dumps(data, indent=2))
        return
    for item in data.get("tokens", [data]) if isinstance(data, dict) else data:
        for key, value in item.items():
            print(f"{key:<14} {' '.join(value) if isinstance(value, list) else value}")
        print()
    if isinstance(data, dict) and "secret" in data:
        print("Store the token and the secret now: TEA keeps neither in clear.", file=sys.stderr)
