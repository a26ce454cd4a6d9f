"""Who may see the console, and CSRF protection for its POSTs.

The pages follow the read API's rule: with `KYCFLOW_API_TOKEN` unset they are open (the
service then listens on loopback only); with it set a request needs either
`Authorization: Bearer <token>` or the session cookie the login form sets. Sessions are
stateless (an expiry signed with a key derived from the token), so every HTTP worker
accepts every other worker's cookie and changing the token ends all sessions.

CSRF: a random value in an HttpOnly, SameSite=Strict cookie that every form repeats in a
hidden field (double submit). Bearer-authenticated POSTs need no CSRF token: a browser
never adds an Authorization header to a cross-site request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from aiohttp import web

SESSION_COOKIE = "kycflow_session"
CSRF_COOKIE = "kycflow_csrf"
SESSION_SECONDS = 8 * 3600  # one working day; then the login form again


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).digest()


def same(a: str, b: str) -> bool:
    """Constant-time equality; hashing first hides the lengths as well."""
    return hmac.compare_digest(_digest(a), _digest(b))


@dataclass(frozen=True)
class Guard:
    api_token: str | None

    @property
    def open(self) -> bool:
        return not self.api_token

    def _key(self) -> bytes:
        return hmac.new(
            _digest(self.api_token or ""), b"kycflow-console-session", "sha256"
        ).digest()

    def new_session(self, now: float | None = None) -> str:
        expires = int((now or time.time()) + SESSION_SECONDS)
        nonce = secrets.token_urlsafe(12)
        payload = f"{expires}.{nonce}"
        return f"{payload}.{self._sign(payload)}"

    def _sign(self, payload: str) -> str:
        return hmac.new(self._key(), payload.encode(), "sha256").hexdigest()

    def session_valid(self, cookie: str, now: float | None = None) -> bool:
        expires, _, rest = cookie.partition(".")
        nonce, _, signature = rest.rpartition(".")
        if not (expires.isascii() and expires.isdigit() and len(expires) <= 12 and nonce):
            return False
        if not hmac.compare_digest(self._sign(f"{expires}.{nonce}"), signature):
            return False
        return int(expires) > (now or time.time())

    def token_valid(self, presented: str) -> bool:
        return bool(self.api_token) and same(presented, self.api_token or "")

    def bearer(self, request: web.Request) -> bool:
        """A single `Authorization: Bearer <token>` header with the right token."""
        headers = request.headers.getall("Authorization", [])
        if len(headers) != 1:
            return False
        scheme, _, presented = headers[0].strip(" \t").partition(" ")
        return scheme.lower() == "bearer" and self.token_valid(presented.strip(" \t"))

    def allowed(self, request: web.Request) -> bool:
        if self.open or self.bearer(request):
            return True
        cookie = request.cookies.get(SESSION_COOKIE)
        return cookie is not None and self.session_valid(cookie)


def csrf_token(request: web.Request) -> str:
    """The request's CSRF value, or a fresh one that `set_csrf_cookie` will store."""
    existing = request.cookies.get(CSRF_COOKIE, "")
    if len(existing) == 32 and existing.isascii() and existing.isalnum():
        return existing
    return secrets.token_hex(16)


def set_csrf_cookie(response: web.StreamResponse, value: str, secure: bool) -> None:
    response.set_cookie(
        CSRF_COOKIE, value, httponly=True, samesite="Strict", path="/ui/", secure=secure
    )


def csrf_ok(request: web.Request, form_value: str, guard: Guard) -> bool:
    """A POST is allowed when it carries the bearer token or repeats the CSRF cookie."""
    if not guard.open and guard.bearer(request):
        return True
    cookie = request.cookies.get(CSRF_COOKIE, "")
    origin = request.headers.get("Origin")
    if origin is not None and origin != "null" and origin.split("://", 1)[-1] != request.host:
        return False
    return bool(cookie) and same(cookie, form_value)
