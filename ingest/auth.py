"""Webhook authentication per provider (providers.md §1.5, §2.5, §3.5; design.md §7).

Pure functions of headers, body, address, settings and clock, so the HTTP layer stays thin and
every path is testable without a server. A provider without credentials accepts nothing, and
every secret comparison is constant-time. Rejection reasons are fixed English phrases: they
go to the client and the log, so they never contain anything the request sent.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import re
from collections.abc import Callable, Mapping

from ingest.oauth import decode_basic, secret_equal, to_bytes, verify_token
from ingest.settings import IngestSettings, Network

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_PORT = re.compile(r":[0-9]{1,5}")


class Rejection(Exception):
    """A request that must not be accepted: answer `status` with `reason`."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason


class _Headers:
    """Case-insensitive header access that refuses ambiguous repeated credential headers."""

    def __init__(self, headers: Mapping[str, str]) -> None:
        self._values: dict[str, list[str]] = {}
        # items() rather than keys(): a multidict yields every copy of a repeated header.
        for name, value in headers.items():
            self._values.setdefault(name.lower(), []).append(value)

    def all(self, name: str) -> list[str]:
        return self._values.get(name.lower(), [])

    def one(self, name: str) -> str | None:
        values = self.all(name)
        if len(values) > 1:
            # Two credentials in one request: which one a proxy or framework honours varies.
            raise Rejection(401, f"repeated {name} header")
        return values[0] if values else None


def parse_address(text: str) -> Address | None:
    """An IP from `ip`, `ipv4:port`, `[ipv6]` or `[ipv6]:port`; None when malformed.

    IPv4-mapped IPv6 addresses (a dual-stack listener's view of IPv4 peers) become IPv4, so
    that IPv4 allow-lists and proxy lists match them.
    """
    text = text.strip()
    if text.startswith("["):
        text, bracket, port = text[1:].partition("]")
        if not bracket or (port and not _PORT.fullmatch(port)):
            return None
    elif text.count(":") == 1:
        text, _, port = text.partition(":")
        if not _PORT.fullmatch(":" + port):
            return None
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


# A connection's peer repeats on every request it carries (and a proxy's on every request);
# parsing it is ~3 µs a request. The socket, not the client's text, names the peer.
_peer_address = functools.lru_cache(maxsize=4096)(parse_address)


def _inside(ip: Address, networks: tuple[Network, ...]) -> bool:
    return any(ip in network for network in networks)


def client_address(peer: str, headers: Mapping[str, str], trusted: tuple[Network, ...]) -> str:
    """The address to attribute a request to (design.md §7).

    X-Forwarded-For is honoured only when the peer is a trusted proxy. It is walked from the
    right, past trusted proxies, to the first untrusted hop: everything left of that hop was
    written by the client and could be forged. A malformed hop ends the walk at the last
    well-formed one, which is a trusted proxy, so forged text further left is never used.
    """
    peer_ip = _peer_address(peer)
    if peer_ip is None:
        return peer
    if not _inside(peer_ip, trusted):
        return str(peer_ip)
    hops = [hop for value in _Headers(headers).all("X-Forwarded-For") for hop in value.split(",")]
    client = peer_ip
    for hop in reversed(hops):
        ip = parse_address(hop)
        if ip is None:
            break
        client = ip
        if not _inside(ip, trusted):
            break
    return str(client)


def authenticate(
    provider: str,
    headers: Mapping[str, str],
    body: bytes,
    address: str,
    settings: IngestSettings,
    now: float,
) -> str:
    """The method that authenticated this webhook ("hmac", "basic", "bearer", "oauth2",
    "header"), or Rejection. `body` must be the exact bytes received."""
    check = _CHECKS.get(provider)
    if check is None:
        raise Rejection(404, "unknown provider")
    return check(_Headers(headers), body, address, settings, now)


def _unconfigured(provider: str) -> Rejection:
    return Rejection(401, f"no credentials configured for {provider}")


def _pair(user: str | None, password: str | None) -> tuple[str, str] | None:
    return (user, password) if user and password else None


def _authorization(headers: _Headers) -> tuple[str, str] | None:
    """(lower-case scheme, credentials) of the Authorization header (schemes are
    case-insensitive, RFC 9110 §11.1)."""
    value = headers.one("Authorization")
    if value is None:
        return None
    scheme, _, credentials = value.strip().partition(" ")
    return scheme.lower(), credentials.strip()


def _check_basic(credentials: str, expected: tuple[str, str]) -> str:
    offered = decode_basic(credentials)
    if offered is None:
        raise Rejection(401, "malformed Basic credentials")
    # `&`, not `and`: always compare both, so timing does not tell which one was wrong.
    if not secret_equal(offered[0], expected[0]) & secret_equal(offered[1], expected[1]):
        raise Rejection(401, "bad credentials")
    return "basic"


def _idenfy(
    headers: _Headers, body: bytes, address: str, settings: IngestSettings, now: float
) -> str:
    keys = [key for key in settings.idenfy_signing_keys if key]  # an empty key signs nothing
    if not keys:
        raise _unconfigured("idenfy")
    signature = headers.one("Idenfy-Signature")
    if signature is None:
        raise Rejection(401, "missing Idenfy-Signature")
    offered = to_bytes(signature.strip().lower())
    # Several keys: rotation, and iDenfy lets each webhook type have its own key. Every key
    # is tried, so timing does not reveal which one matched.
    matched = False
    for key in keys:
        expected = hmac.new(to_bytes(key), body, hashlib.sha256).hexdigest().encode()
        matched |= hmac.compare_digest(offered, expected)
    if not matched:
        raise Rejection(401, "bad signature")
    return "hmac"


def _ondato(
    headers: _Headers, body: bytes, address: str, settings: IngestSettings, now: float
) -> str:
    basic = _pair(settings.ondato_username, settings.ondato_password)
    oauth = _pair(settings.ondato_client_id, settings.ondato_client_secret)
    if basic is None and oauth is None:
        raise _unconfigured("ondato")
    networks = settings.ondato_allowed_networks
    if networks:
        ip = parse_address(address)
        if ip is None or not _inside(ip, networks):
            raise Rejection(403, "address not allowed")
    authorization = _authorization(headers)
    if authorization is None:
        raise Rejection(401, "missing Authorization")
    scheme, credentials = authorization
    if scheme == "basic" and basic is not None:
        return _check_basic(credentials, basic)
    if scheme == "bearer" and oauth is not None:
        if not verify_token(settings, credentials, now):
            raise Rejection(401, "invalid or expired token")
        return "oauth2"
    raise Rejection(401, "unsupported authorization scheme")


def _idwise(
    headers: _Headers, body: bytes, address: str, settings: IngestSettings, now: float
) -> str:
    # Empty values count as unset: an empty token must not match an empty Bearer.
    token = settings.idwise_token or None
    custom = settings.idwise_header
    if custom is not None and not (custom[0] and custom[1]):
        custom = None
    basic = _pair(settings.idwise_username, settings.idwise_password)
    if token is None and basic is None and custom is None:
        raise _unconfigured("idwise")
    # Any configured method suffices, so a failure is remembered and the next one tried.
    failure: Rejection | None = None
    authorization = _authorization(headers)
    if authorization is not None:
        scheme, credentials = authorization
        try:
            if scheme == "bearer" and token is not None:
                if secret_equal(credentials, token):
                    return "bearer"
                raise Rejection(401, "bad credentials")
            if scheme == "basic" and basic is not None:
                return _check_basic(credentials, basic)
            raise Rejection(401, "unsupported authorization scheme")
        except Rejection as rejection:
            failure = rejection
    if custom is not None:
        value = headers.one(custom[0])
        if value is not None:
            if secret_equal(value.strip(), custom[1]):
                return "header"
            failure = failure or Rejection(401, "bad credentials")
    raise failure or Rejection(401, "missing credentials")


_Check = Callable[[_Headers, bytes, str, IngestSettings, float], str]
_CHECKS: dict[str, _Check] = {"idenfy": _idenfy, "ondato": _ondato, "idwise": _idwise}
