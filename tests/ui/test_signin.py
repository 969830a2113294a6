"""Control Center sign-in over real HTTP (no browser): the form and its CSRF secret, the session cookie and
its attributes, the API through the cookie (tenant scope, CSRF on writes), sign-out, revocation, expiry."""
from __future__ import annotations

import re
import time

import httpx
import jwt
import pytest

from tea.auth.keys import SecretBox
from tea.errors import Forbidden, Unauthorized
from tea.ui.session import COOKIE, Sessions
from tests.auth.conftest import ADMIN_TOKEN, admin_headers, create_token

HS_SECRET = "ui-jwt-secret-" + "j" * 32


def browser(url: str) -> httpx.Client:
    """A client that keeps cookies and does not follow redirects (the tests look at them)."""
    return httpx.Client(base_url=url, timeout=10, follow_redirects=False)


def sign_in(c: httpx.Client, token: str, next_path: str = "/ui") -> httpx.Response:
    form = c.get("/ui/login", params={"next": next_path})
    assert form.status_code == 200
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
    return c.post("/ui/login", data={"token": token, "csrf": csrf, "next": next_path})


def page_csrf(c: httpx.Client, path: str = "/ui") -> str:
    r = c.get(path)
    assert r.status_code == 200, r.text
    return re.search(r'<meta name="csrf-token" content="([^"]+)">', r.text).group(1)  # type: ignore[union-attr]


@pytest.fixture
def server(secure):  # type: ignore[no-untyped-def]
    return secure(storage_backend="memory", auth__jwt_secret=HS_SECRET)


def test_pages_send_the_signed_out_to_the_form(server) -> None:
    with browser(server.url) as c:
        r = c.get("/ui/events?range=1h")
        assert r.status_code == 303 and r.headers["location"] == "/ui/login?next=%2Fui%2Fevents%3Frange%3D1h"
        form = c.get("/ui/login", params={"next": "/ui/events"})
        assert form.status_code == 200 and 'name="token"' in form.text and 'type="password"' in form.text
        cookie = form.headers["set-cookie"]
        assert "tea_login=" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert "default-src 'none'" in form.headers["content-security-policy"]
        # JSON routes still answer 401 in their own shape
        assert c.get("/v1/events").status_code == 401


def test_sign_in_sets_a_strict_http_only_cookie_and_the_api_follows_it(server) -> None:
    acme = create_token(server.url, "acme")["token"]
    beta = create_token(server.url, "beta")["token"]
    httpx.post(server.url + "/v1/events", json={"event_type": "e", "method": "beta-only"},
               headers={"authorization": f"Bearer {beta}"}).raise_for_status()
    with browser(server.url) as c:
        r = sign_in(c, acme, "/ui/agents")
        assert r.status_code == 303 and r.headers["location"] == "/ui/agents"
        cookie = r.headers["set-cookie"]
        assert cookie.startswith(COOKIE + "=") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert "Path=/" in cookie and "Secure" not in cookie  # (plain HTTP here; Secure over TLS)
        assert acme not in cookie  # sealed: the token is not readable from the cookie
        page = c.get("/ui/agents")
        assert page.status_code == 200 and "tenant acme" in page.text and "Sign out" in page.text
        assert c.get("/ui/ops").status_code == 403  # admins only
        # the API through the cookie: the token's tenant and scopes
        r = c.post("/v1/events", json={"event_type": "e", "method": "mine"}, headers={"x-csrf-token": page_csrf(c)})
        assert r.status_code == 200, r.text
        server.wait_stored(2)
        events = c.get("/v1/events").json()["events"]
        assert [(e["tenant_id"], e["method"]) for e in events] == [("acme", "mine")]
        assert c.get("/v1/events", params={"tenant_id": "beta"}).status_code == 403


def test_writes_through_the_cookie_need_the_csrf_token_and_this_origin(server) -> None:
    acme = create_token(server.url, "acme")["token"]
    with browser(server.url) as c:
        sign_in(c, acme)
        csrf = page_csrf(c)
        event = {"event_type": "e"}
        missing = c.post("/v1/events", json=event)
        assert missing.status_code == 403 and missing.json()["error"] == "csrf_failed"
        wrong = c.post("/v1/events", json=event, headers={"x-csrf-token": csrf[::-1]})
        assert wrong.status_code == 403
        other_site = c.post("/v1/events", json=event, headers={"x-csrf-token": csrf, "origin": "http://evil.example"})
        assert other_site.status_code == 403
        ok = c.post("/v1/events", json=event, headers={"x-csrf-token": csrf, "origin": server.url})
        assert ok.status_code == 200, ok.text
        # a token in the header is not a cookie session: no CSRF token needed (not a browser's ambient credential)
        assert httpx.post(server.url + "/v1/events", json=event,
                          headers={"authorization": f"Bearer {acme}"}).status_code == 200


def test_the_sign_in_form_refuses_bad_tokens_and_forged_posts(server) -> None:
    with browser(server.url) as c:
        r = sign_in(c, "tk_" + "0" * 32 + "_" + "x" * 32)
        assert r.status_code == 401 and "not valid" in r.text and COOKIE not in r.headers.get("set-cookie", "")
        forged = c.post("/ui/login", data={"token": ADMIN_TOKEN, "csrf": "guess", "next": "/ui"})
        assert forged.status_code == 403 and COOKIE not in forged.headers.get("set-cookie", "")
        assert sign_in(c, "").status_code == 400
        assert sign_in(c, ADMIN_TOKEN, "https://evil.example/").headers["location"] == "/ui"  # never off-site
    audit = httpx.get(server.url + "/v1/audit", params={"action": "auth_failure"}, headers=admin_headers()).json()
    assert any(row.get("details", {}).get("path") == "/ui/login" for row in audit["entries"])


def test_write_only_tokens_cannot_sign_in(server) -> None:
    writer = create_token(server.url, "acme", scopes=["events:write"])["token"]
    with browser(server.url) as c:
        r = sign_in(c, writer)
        assert r.status_code == 403 and "events:read" in r.text


def test_sign_out_ends_the_session_and_a_revoked_token_ends_it_too(server) -> None:
    acme = create_token(server.url, "acme")
    with browser(server.url) as c:
        sign_in(c, acme["token"])
        csrf = page_csrf(c)
        stolen = c.cookies[COOKIE]
        assert c.post("/ui/logout", data={"csrf": "wrong"}).status_code == 403
        out = c.post("/ui/logout", data={"csrf": csrf})
        assert out.status_code == 303 and out.headers["location"] == "/ui/login"
        assert "Max-Age=0" in out.headers["set-cookie"]
        assert c.get("/ui").status_code == 303
    replayed = httpx.get(server.url + "/v1/events", cookies={COOKIE: stolen})
    assert replayed.status_code == 401 and replayed.json()["error"] == "session_expired"
    with browser(server.url) as c:
        sign_in(c, acme["token"])
        assert c.get("/v1/events").status_code == 200
        assert httpx.delete(server.url + f"/v1/tokens/{acme['token_id']}", headers=admin_headers()).status_code == 200
        deadline = time.monotonic() + 30  # (the token cache: auth.token_cache_s)
        while c.get("/v1/events").status_code != 401:
            assert time.monotonic() < deadline, "a revoked token's session kept working"
            time.sleep(0.2)


def test_a_tampered_cookie_is_refused(server) -> None:
    acme = create_token(server.url, "acme")["token"]
    with browser(server.url) as c:
        sign_in(c, acme)
        value = c.cookies[COOKIE]
    tampered = value[:-4] + ("AAAA" if not value.endswith("AAAA") else "BBBB")
    r = httpx.get(server.url + "/v1/events", cookies={COOKIE: tampered})
    assert r.status_code == 401 and r.json()["error"] == "invalid_session"


def test_jwt_and_admin_sign_in(server) -> None:
    now = int(time.time())
    token = jwt.encode({"sub": "ana", "tenant": "acme", "scope": "events:read", "iat": now, "exp": now + 300},
                       HS_SECRET, algorithm="HS256")
    with browser(server.url) as c:
        assert sign_in(c, token).status_code == 303
        assert "tenant acme · ana" in c.get("/ui").text
    with browser(server.url) as c:
        assert sign_in(c, ADMIN_TOKEN).status_code == 303
        page = c.get("/ui/ops")
        assert page.status_code == 200 and 'data-admin="true"' in page.text


def test_signed_tokens_sign_in_without_signing_each_request(secure) -> None:
    live = secure(storage_backend="memory", auth__require_signature=True)
    acme = create_token(live.url, "acme")["token"]
    assert httpx.get(live.url + "/v1/events", headers={"authorization": f"Bearer {acme}"}).status_code == 401
    with browser(live.url) as c:
        assert sign_in(c, acme).status_code == 303
        assert c.get("/v1/events").status_code == 200


def test_development_mode_needs_no_sign_in(serve) -> None:
    live = serve(storage_backend="memory")
    with browser(live.url) as c:
        assert c.get("/ui/login").headers["location"] == "/ui"
        page = c.get("/ui")
        assert page.status_code == 200 and "development mode" in page.text
        assert c.get("/dashboard").headers["location"] == "/ui"


def test_the_ui_can_be_turned_off_and_the_live_tail_stays(serve) -> None:
    live = serve(storage_backend="memory", ui__enabled=False)
    assert httpx.get(live.url + "/ui").status_code == 404
    with httpx.stream("GET", live.url + "/v1/events/stream", timeout=5) as r:
        assert r.status_code == 200


def test_sessions_expire_and_carry_secure_over_tls() -> None:
    clock = [1000.0]
    sessions = Sessions(lambda: SecretBox(b"k" * 32), lifetime_s=60, clock=lambda: clock[0])
    session, value = sessions.issue("tk_abc")
    headers = {"cookie": f"other=1; {COOKIE}={value}"}
    assert sessions.read(headers) == session
    assert "; Secure" in sessions.cookie(value, secure=True) and "; Secure" not in sessions.cookie(value, secure=False)
    with pytest.raises(Forbidden):
        sessions.check_csrf("DELETE", headers, session, secure=False)
    sessions.check_csrf("GET", headers, session, secure=False)  # reads need no token
    sessions.check_csrf("POST", {**headers, "x-csrf-token": session.csrf, "host": "tea:3001",
                                 "origin": "https://tea:3001"}, session, secure=True)
    clock[0] += 61
    with pytest.raises(Unauthorized):
        sessions.read(headers)
    with pytest.raises(ValueError):
        sessions.issue("x" * 5000)
