"""Our OAuth2 token endpoint for Ondato's OAuth2 webhook mode (providers.md §2.5).

Ondato is the OAuth client: it posts its client id and secret to our `POST /oauth/token`
(RFC 6749 §4.4, client credentials) and sends the token back as `Authorization: Bearer`.

Tokens are stateless so that any HTTP worker process can verify them without shared storage:
`base64url(json{"exp", "cid", "n"}) "." base64url(HMAC-SHA256(client_secret, json))`. Keying
the MAC with the client secret means rotating the secret revokes every issued token. A token
cannot be revoked individually; keep KYCFLOW_ONDATO_TOKEN_TTL short if that matters.

The small credential primitives shared with `ingest.auth` live here too, because auth
already depends on this module for verify_token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import re
import secrets
from collections.abc import Mapping
from urllib.parse import unquote_plus

from ingest.settings import IngestSettings

_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_MAX_TOKEN = 1024  # ours are ~110 characters; bounds the work done on garbage


class OAuthError(Exception):
    """An RFC 6749 §5.2 error: send `status` with `{"error", "error_description"}`.

    For status 401 the route should also send `WWW-Authenticate: Basic realm="kycflow"`.
    """

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(f"{status} {error}: {description}")
        self.status = status
        self.error = error
        self.description = description

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


def to_bytes(text: str) -> bytes:
    """UTF-8, restoring any bytes os.environ or aiohttp carried as surrogate escapes."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def secret_equal(given: str, expected: str) -> bool:
    """Constant-time equality; hashing first hides the expected length as well."""
    return hmac.compare_digest(
        hashlib.sha256(to_bytes(given)).digest(), hashlib.sha256(to_bytes(expected)).digest()
    )


def decode_basic(credentials: str) -> tuple[str, str] | None:
    """The (user, password) of an HTTP Basic credentials string; None when malformed."""
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except ValueError:  # bad base64, non-ASCII input and non-UTF-8 bytes are all ValueErrors
        return None
    user, colon, password = decoded.partition(":")
    return (user, password) if colon else None


def issue_token(
    settings: IngestSettings, form: Mapping[str, str], authorization: str | None, now: float
) -> dict[str, object]:
    """Answer a client-credentials token request, or raise OAuthError."""
    client_id, client_secret = settings.ondato_client_id, settings.ondato_client_secret
    if not client_id or not client_secret:
        raise OAuthError(401, "invalid_client", "OAuth2 client credentials are not configured")
    for name in ("grant_type", "client_id", "client_secret"):
        if sum(1 for key, _ in form.items() if key == name) > 1:
            raise OAuthError(400, "invalid_request", f"{name} is repeated")
    offered = _offered_credentials(form, authorization)
    if not any(
        secret_equal(cid, client_id) & secret_equal(secret, client_secret)
        for cid, secret in offered
    ):
        raise OAuthError(401, "invalid_client", "client authentication failed")
    grant_type = form.get("grant_type")
    if not grant_type:
        raise OAuthError(400, "invalid_request", "grant_type is required")
    if grant_type != "client_credentials":
        raise OAuthError(400, "unsupported_grant_type", "only client_credentials is supported")
    ttl = settings.token_ttl
    claims = {"exp": math.floor(now) + ttl, "cid": client_id, "n": secrets.token_urlsafe(16)}
    payload = json.dumps(claims, separators=(",", ":"), sort_keys=True).encode()
    token = _b64(payload) + "." + _b64(_mac(client_secret, payload))
    return {"access_token": token, "token_type": "Bearer", "expires_in": ttl}


def verify_token(settings: IngestSettings, token: str, now: float) -> bool:
    """True only for an unexpired token we signed for the configured client. Never raises."""
    client_id, client_secret = settings.ondato_client_id, settings.ondato_client_secret
    if not client_id or not client_secret or not isinstance(token, str):
        return False
    if len(token) > _MAX_TOKEN or token.count(".") != 1:
        return False
    encoded_payload, encoded_mac = token.split(".")
    payload, mac = _unb64(encoded_payload), _unb64(encoded_mac)
    if payload is None or mac is None:
        return False
    if not hmac.compare_digest(_mac(client_secret, payload), mac):
        return False
    try:
        claims = json.loads(payload)
    except (ValueError, RecursionError):
        return False
    if not isinstance(claims, dict):
        return False
    expiry, cid = claims.get("exp"), claims.get("cid")
    if not isinstance(expiry, int) or isinstance(expiry, bool) or not isinstance(cid, str):
        return False
    return secret_equal(cid, client_id) and now < expiry


def _offered_credentials(
    form: Mapping[str, str], authorization: str | None
) -> list[tuple[str, str]]:
    """The (client id, secret) candidates a request presents (RFC 6749 §2.3.1)."""
    if authorization and authorization.strip():
        if form.get("client_secret"):
            # §2.3: a client MUST NOT use more than one authentication method per request.
            raise OAuthError(400, "invalid_request", "use one client authentication method")
        scheme, _, credentials = authorization.strip().partition(" ")
        pair = decode_basic(credentials) if scheme.lower() == "basic" else None
        if pair is None:
            raise OAuthError(401, "invalid_client", "malformed client authentication")
        # §2.3.1 form-encodes id and secret before Basic; many clients skip that, so try both.
        return [pair, (unquote_plus(pair[0]), unquote_plus(pair[1]))]
    cid, secret = form.get("client_id"), form.get("client_secret")
    if not cid or not secret:
        raise OAuthError(401, "invalid_client", "client authentication required")
    return [(cid, secret)]


def _mac(secret: str, payload: bytes) -> bytes:
    return hmac.new(to_bytes(secret), payload, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes | None:
    # urlsafe_b64decode silently drops characters outside the alphabet; refuse them instead.
    if not text or not _B64URL.fullmatch(text):
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        return None
    # The last character's unused bits are free in the decoder: without this, four
    # spellings of one token would all verify. Only the canonical encoding is the token.
    return raw if base64.urlsafe_b64encode(raw).rstrip(b"=") == text.encode() else None
