"""The Control Center at ``/ui``: its pages, sign-in and sign-out, its static assets, and the live tail.

Pages are server-rendered shells (who is signed in, the CSRF token, the navigation, the toolbar);
each page's script then reads TEA's own JSON API (``/v1/metrics``, ``/v1/events``, ...) with the
session cookie, so every number on a page comes from the same query layer, tenant scoping and
limits as any other client's. Every asset is a file of ``tea/ui/static`` served from here; the
Content-Security-Policy allows nothing from anywhere else.
"""
from __future__ import annotations

import hashlib
import html
import logging
import secrets
from importlib import resources
from string import Template
from typing import Annotated, Any
from urllib.parse import parse_qs, quote

import msgspec

from tea.auth.audit import AuditLog
from tea.auth.chain import AuthChain
from tea.auth.gate import Gate, principal_of
from tea.auth.keys import same
from tea.auth.principal import READ, Principal
from tea.errors import ClientError, Forbidden, NotFound, Unauthorized
from tea.http import Request, Response, Route
from tea.http.params import MAX_PARAM_CHARS, Params, text
from tea.settings import Settings
from tea.ui.session import COOKIE, LOGIN_COOKIE, Session, cookies, is_tls, same_origin

log = logging.getLogger(__name__)
HTML = b"text/html; charset=utf-8"
MAX_FORM_BYTES = 16 * 1024
LOGIN_TTL_S = 3600
# what a page may load: only this host; nothing inline, no eval, no frames
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; "
                               "base-uri 'none'",
    "x-content-type-options": "nosniff", "referrer-policy": "same-origin", "x-frame-options": "DENY",
    "cache-control": "no-store",
}
# path -> (page script, heading, admin only)
PAGES: dict[str, tuple[str, str, bool]] = {
    "/ui": ("overview", "Overview", False),
    "/ui/events": ("events", "Events", False),
    "/ui/traces": ("traces", "Traces", False),
    "/ui/traces/{trace_id}": ("trace", "Trace", False),
    "/ui/agents": ("agents", "Agents", False),
    "/ui/registry": ("registry", "Registry", False),
    "/ui/alerts": ("alerts", "Alerts", False),
    "/ui/usage": ("usage", "Usage", False),
    "/ui/ops": ("ops", "Operations", True),
}
NAV = [("/ui", "Overview"), ("/ui/events", "Events"), ("/ui/traces", "Traces"), ("/ui/agents", "Agents"),
       ("/ui/registry", "Registry"), ("/ui/alerts", "Alerts"), ("/ui/usage", "Usage"), ("/ui/ops", "Ops")]
TYPES = {".js": b"text/javascript; charset=utf-8", ".css": b"text/css; charset=utf-8", ".svg": b"image/svg+xml",
         ".png": b"image/png"}


class Assets:
    """The files of tea/ui/static, read once; ``version`` (a hash of them all) busts browser caches."""

    def __init__(self) -> None:
        root = resources.files("tea.ui")
        self.files = {p.name: p.read_bytes() for p in (root / "static").iterdir()
                      if p.is_file() and p.name[p.name.rfind("."):] in TYPES}
        self.templates = {p.name: Template(p.read_text()) for p in (root / "templates").iterdir() if p.is_file()}
        digest = hashlib.sha256()
        for name in sorted(self.files):
            digest.update(name.encode() + b"\0" + self.files[name])
        self.version = digest.hexdigest()[:12]
        self.etags = {name: '"' + hashlib.sha256(data).hexdigest()[:16] + '"' for name, data in self.files.items()}

    def render(self, name: str, **values: str) -> bytes:
        return self.templates[name].substitute(v=self.version, **values).encode()


def html_response(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status, HTML, {**SECURITY_HEADERS, **(headers or {})})


def redirect(location: str, cookie: str | None = None) -> Response:
    headers = {"location": location, "cache-control": "no-store"}
    if cookie:
        headers["set-cookie"] = cookie
    return Response(b"", 303, None, headers)


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path of the Control Center, never another site."""
    if not target or not target.startswith("/ui") or target.startswith("//") or "\\" in target:
        return "/ui"
    return target


class PageParams(Params, forbid_unknown_fields=False):
    """A page's parameters: its script reads any it likes (filters, ranges); none may hold a NUL."""


class TracePageParams(PageParams):
    PATH = frozenset({"trace_id"})
    trace_id: text("the trace")  # type: ignore[valid-type]


class LoginParams(PageParams):
    next: Annotated[str, msgspec.Meta(max_length=MAX_PARAM_CHARS,
                                      description="the /ui page to go to after signing in")] | None = None


class AssetParams(PageParams):
    PATH = frozenset({"name"})
    name: text("the file", 256)  # type: ignore[valid-type]


class Pages:
    def __init__(self, settings: Settings, auth: AuthChain, gate: Gate, audit: AuditLog) -> None:
        self.auth = auth
        self.gate = gate
        self.audit = audit
        self.assets = Assets()
        self.sessions = auth.sessions
        self.dev = not settings.auth_validation

    # ------------------------------------------------------------ who is asking
    async def principal(self, request: Request) -> Principal | None:
        """The signed-in principal (development mode: the dev principal); None when nobody is signed in."""
        headers = request.headers
        if not self.dev and COOKIE not in cookies(headers.get("cookie")) and "authorization" not in headers:
            return None
        try:
            await self.gate.admit(request, READ)
        except Unauthorized:
            return None
        return principal_of(request)

    def session(self, request: Request) -> Session | None:
        try:
            return self.sessions.read(request.headers) if self.sessions is not None else None
        except Unauthorized:
            return None

    # ------------------------------------------------------------ pages
    async def page(self, request: Request, p: PageParams | None = None) -> Response:
        script, heading, admin_only = PAGES[self._template_of(request)]
        principal = await self.principal(request)
        if principal is None:
            target = request.path + ("?" + request.scope["query_string"].decode("latin-1")
                                     if request.scope.get("query_string") else "")
            return redirect("/ui/login?next=" + quote(target, safe=""))
        if admin_only and not principal.is_admin:
            return self.error_page(request, principal, 403, "Operations need an admin token.")
        session = self.session(request)
        return html_response(self.assets.render(
            "page.html", title=html.escape(heading), page=script, heading=html.escape(heading),
            csrf=html.escape(session.csrf if session else ""), nav=self.nav(request.path, principal),
            admin="true" if principal.is_admin else "false", tenant=html.escape(principal.tenant_id or ""),
            auth="on" if not self.dev else "off", who=self.who(principal, session),
            trace_id=html.escape(request.path_params.get("trace_id", ""))))

    def _template_of(self, request: Request) -> str:
        return "/ui/traces/{trace_id}" if "trace_id" in request.path_params else request.path.rstrip("/") or "/ui"

    def nav(self, current: str, principal: Principal) -> str:
        links = []
        for path, label in NAV:
            if path == "/ui/ops" and not principal.is_admin:
                continue
            here = current == path or (path != "/ui" and current.startswith(path + "/"))
            current_mark = ' aria-current="page"' if here else ""
            links.append(f'<a href="{path}"{current_mark}>{label}</a>')
        return "".join(links)

    def who(self, principal: Principal, session: Session | None) -> str:
        if self.dev:
            return '<span class="badge warn" title="TEA_AUTH_VALIDATION=false">development mode: no sign-in</span>'
        name = "admin" if principal.is_admin and principal.tenant_id is None else f"tenant {principal.tenant_id}"
        label = html.escape(f"{name} · {principal.user_id or principal.token_id or principal.method}")
        out = f'<span class="who-name">{label}</span>'
        if session is not None:
            out += ('<form method="post" action="/ui/logout" class="signout">'
                    f'<input type="hidden" name="csrf" value="{html.escape(session.csrf)}">'
                    '<button type="submit">Sign out</button></form>')
        return out

    def error_page(self, request: Request, principal: Principal | None, status: int, message: str) -> Response:
        return html_response(self.assets.render(
            "message.html", title=str(status), heading=html.escape(message),
            nav=self.nav(request.path, principal) if principal else ""), status)

    # ------------------------------------------------------------ sign-in, sign-out
    async def login_form(self, request: Request, p: LoginParams | None = None) -> Response:
        if self.dev:
            return redirect("/ui")
        target = safe_next(request.param("next"))
        if self.session(request) is not None:
            return redirect(target)
        return self._login_page(request, target)

    def _login_page(self, request: Request, target: str, status: int = 200, error: str = "") -> Response:
        secure = is_tls(request.scope)
        nonce = secrets.token_urlsafe(24)
        cookie = (f"{LOGIN_COOKIE}={nonce}; Path=/ui/login; Max-Age={LOGIN_TTL_S}; HttpOnly; SameSite=Strict"
                  + ("; Secure" if secure else ""))
        body = self.assets.render("login.html", csrf=nonce, next=html.escape(target),
                                  error=f'<p class="error" role="alert">{html.escape(error)}</p>' if error else "")
        return html_response(body, status, {"set-cookie": cookie})

    async def login(self, request: Request) -> Response:
        if self.dev or self.sessions is None:
            return redirect("/ui")
        form = parse_qs((await request.body(MAX_FORM_BYTES)).decode("utf-8", "replace"))
        field = {k: v[-1] for k, v in form.items()}
        target = safe_next(field.get("next"))
        expected = cookies(request.header("cookie")).get(LOGIN_COOKIE)
        if not expected or not same(field.get("csrf", ""), expected) or \
                not same_origin(request.headers, is_tls(request.scope)):
            return self._login_page(request, target, 403, "The sign-in form expired; please try again.")
        token = field.get("token", "").strip()
        if not token:
            return self._login_page(request, target, 400, "Enter a TEA token.")
        try:
            principal = await self.auth.for_token(request, token)
        except Unauthorized as exc:
            self.gate.failed(request, exc)
            return self._login_page(request, target, 401, "This token is not valid.")
        if not principal.can(READ):
            return self._login_page(request, target, 403, "This token cannot read events (it needs events:read).")
        try:
            session, value = self.sessions.issue(token)
        except ValueError as exc:
            return self._login_page(request, target, 400, str(exc))
        self.audit.record("ui_sign_in", actor=principal.user_id or principal.token_id,
                          tenant_id=principal.tenant_id, remote_addr=request.client)
        return redirect(target, self.sessions.cookie(value, is_tls(request.scope)))

    async def logout(self, request: Request) -> Response:
        if self.sessions is None:
            return redirect("/ui")
        session = self.session(request)
        if session is not None:
            form = parse_qs((await request.body(MAX_FORM_BYTES)).decode("utf-8", "replace"))
            try:
                self.sessions.check_csrf("POST", request.headers, session, is_tls(request.scope),
                                         presented=(form.get("csrf") or [""])[-1])
            except Forbidden:
                return html_response(self.assets.render("message.html", title="403", nav="",
                                                        heading="Sign-out refused: the form did not come from this "
                                                        "page. Use the Sign out button."), 403)
            self.sessions.revoke(session)
        return redirect("/ui/login", self.sessions.cookie("", is_tls(request.scope), max_age_s=0))

    # ------------------------------------------------------------ assets
    async def static(self, request: Request, p: AssetParams | None = None) -> Response:
        name = request.path_params["name"]
        data = self.assets.files.get(name)
        if data is None:
            raise NotFound(f"no asset {name!r}", code="asset_not_found")
        etag = self.assets.etags[name]
        cache = "public, max-age=31536000, immutable" if request.param("v") == self.assets.version else "no-cache"
        headers = {"etag": etag, "cache-control": cache, "x-content-type-options": "nosniff"}
        if request.header("if-none-match") == etag:
            return Response(b"", 304, None, headers)
        return Response(data, 200, TYPES[name[name.rfind("."):]], headers)


def routes(settings: Settings, auth: AuthChain, gate: Gate, audit: AuditLog) -> list[Route]:
    if not settings.ui.enabled:
        return []
    pages = Pages(settings, auth, gate, audit)

    async def page(request: Request, p: PageParams) -> Response:
        try:
            return await pages.page(request, p)
        except ClientError as exc:  # (a refused credential or scope: the page's own shape, not JSON)
            return pages.error_page(request, None, exc.status, exc.message)

    async def to_ui(request: Request) -> Response:
        return redirect("/ui")

    html_ok: dict[int, tuple[str, dict[str, Any]]] = {200: ("The page", {"text/html": {"type": "string"}}),
                                                      303: ("Sign in first (to /ui/login)", {})}
    out = [Route("GET", path, page, f"Control Center: {heading}", tags=("ui",),
                 query=TracePageParams if "{" in path else PageParams, responses=html_ok, scope=None,
                 consistency="derived")
           for path, (_, heading, _admin) in PAGES.items()]
    out += [
        Route("GET", "/ui/", to_ui, "Control Center", tags=("ui",), include_in_schema=False, scope=None),
        Route("GET", "/dashboard", to_ui, "The Control Center (at /ui)", tags=("ui",), include_in_schema=False,
              scope=None),
        Route("GET", "/ui/login", pages.login_form, "Control Center sign-in form", tags=("ui",), query=LoginParams,
              responses=html_ok, scope=None),
        Route("POST", "/ui/login", pages.login, "Sign in with a TEA token (form fields token, csrf, next): sets the "
              "session cookie", tags=("ui",),
              request_body={"application/x-www-form-urlencoded": {"type": "object", "properties": {
                  "token": {"type": "string"}, "csrf": {"type": "string"}, "next": {"type": "string"}}}},
              responses={303: ("Signed in: to `next`, with the session cookie", {}),
                         401: ("Not a valid token (the form again)", {"text/html": {"type": "string"}})},
              scope=None),
        Route("POST", "/ui/logout", pages.logout, "Sign out (form field csrf): ends the session", tags=("ui",),
              responses={303: ("To the sign-in form, the cookie cleared", {})}, scope=None),
        Route("GET", "/ui/static/{name}", pages.static, "Control Center assets", tags=("ui",), query=AssetParams,
              include_in_schema=False, scope=None),
    ]
    return out
