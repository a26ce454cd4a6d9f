"""Ingest configuration: provider credentials, network trust and limits (design.md §6, §7).

Values are read from a plain mapping (the environment or a config file) so that tests and the
first-run credential generator need no process environment. Every value is stripped and an
empty value counts as unset, because config files often carry stray whitespace.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Number = TypeVar("Number", int, float)

IDENFY_SIGNING_KEY = "KYCFLOW_IDENFY_SIGNING_KEY"
ONDATO_USERNAME = "KYCFLOW_ONDATO_USERNAME"
ONDATO_PASSWORD = "KYCFLOW_ONDATO_PASSWORD"
ONDATO_CLIENT_ID = "KYCFLOW_ONDATO_CLIENT_ID"
ONDATO_CLIENT_SECRET = "KYCFLOW_ONDATO_CLIENT_SECRET"
ONDATO_ALLOWED_IPS = "KYCFLOW_ONDATO_ALLOWED_IPS"
TRUSTED_PROXIES = "KYCFLOW_TRUSTED_PROXIES"
IDWISE_TOKEN = "KYCFLOW_IDWISE_TOKEN"
IDWISE_USERNAME = "KYCFLOW_IDWISE_USERNAME"
IDWISE_PASSWORD = "KYCFLOW_IDWISE_PASSWORD"
IDWISE_HEADER = "KYCFLOW_IDWISE_HEADER"
MAX_BODY = "KYCFLOW_MAX_BODY"
READ_TIMEOUT = "KYCFLOW_READ_TIMEOUT"
ONDATO_TOKEN_TTL = "KYCFLOW_ONDATO_TOKEN_TTL"
HEADER_TIMEOUT = "KYCFLOW_HEADER_TIMEOUT"
KEEPALIVE_TIMEOUT = "KYCFLOW_KEEPALIVE_TIMEOUT"
MAX_HEADER_SIZE = "KYCFLOW_MAX_HEADER_SIZE"
ACCESS_LOG = "KYCFLOW_ACCESS_LOG"

# Fixed limits (not settings: no provider comes near them). A request over one gets a 4xx
# with a reason, never a 5xx. SQLite refuses values over 1e9 bytes, so KYCFLOW_MAX_BODY is
# capped well below that.
MAX_BODY_CAP = 256 * 1024 * 1024
MAX_HEADERS = 128  # header fields per request (431 above)
MAX_REQUEST_LINE = 4096  # bytes of method, target and version (414 above)
MAX_KEPT_HEADER = 1024  # characters of a stored header's value (431 above)
MAX_DEDUP_KEY = 512  # characters of a dedup key, e.g. "idwise:event:" + eventId (400 above)
MAX_TOKEN_REQUEST = 64 * 1024  # declared bytes of a /oauth/token body (413 above)
_FLAGS = {"true": True, "1": True, "yes": True, "on": True}
_FLAGS |= {"false": False, "0": False, "no": False, "off": False}

# Every key whose value is (part of) a credential. User names and the client id are included
# because half of a pair is useless to generate and is refused by from_config. A generated
# KYCFLOW_IDWISE_HEADER value must have the shape "Name: value".
CREDENTIAL_KEYS: tuple[str, ...] = (
    IDENFY_SIGNING_KEY,
    ONDATO_USERNAME,
    ONDATO_PASSWORD,
    ONDATO_CLIENT_ID,
    ONDATO_CLIENT_SECRET,
    IDWISE_TOKEN,
    IDWISE_USERNAME,
    IDWISE_PASSWORD,
    IDWISE_HEADER,
)

# A pair set by halves is almost certainly a typo; refusing to start beats silently
# rejecting every webhook of that provider.
_PAIRS = (
    (ONDATO_USERNAME, ONDATO_PASSWORD),
    (ONDATO_CLIENT_ID, ONDATO_CLIENT_SECRET),
    (IDWISE_USERNAME, IDWISE_PASSWORD),
)
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP field name (RFC 9110 §5.1)


@dataclass(frozen=True)
class IngestSettings:
    """What ingest needs to authenticate and bound a webhook. Secrets are kept out of repr()."""

    idenfy_signing_keys: tuple[str, ...] = field(default=(), repr=False)
    ondato_username: str | None = field(default=None, repr=False)
    ondato_password: str | None = field(default=None, repr=False)
    ondato_client_id: str | None = field(default=None, repr=False)
    ondato_client_secret: str | None = field(default=None, repr=False)
    ondato_allowed_networks: tuple[Network, ...] = ()  # empty: any address
    trusted_proxies: tuple[Network, ...] = ()
    idwise_token: str | None = field(default=None, repr=False)
    idwise_username: str | None = field(default=None, repr=False)
    idwise_password: str | None = field(default=None, repr=False)
    idwise_header: tuple[str, str] | None = field(default=None, repr=False)
    max_body: int = 1024 * 1024
    read_timeout: float = 10.0
    token_ttl: int = 3600
    header_timeout: float = 10.0  # from connection (or a request's first byte) to its headers
    keepalive_timeout: float = 75.0  # idle time between requests; above common proxies' 60 s
    max_header_size: int = 8192  # bytes of one header field, name and value (431 above)
    access_log: bool = True

    @property
    def secret_headers(self) -> frozenset[str]:
        """Lower-case names of headers that carry a configured secret: never stored."""
        return frozenset({self.idwise_header[0].lower()} if self.idwise_header else ())

    @classmethod
    def from_config(cls, config: Mapping[str, str]) -> IngestSettings:
        """Read the KYCFLOW_* keys; a malformed value raises ValueError naming its key."""
        for first, second in _PAIRS:
            if (_value(config, first) is None) != (_value(config, second) is None):
                raise ValueError(f"{first} and {second} must be set together")
        return cls(
            idenfy_signing_keys=tuple(_items(config, IDENFY_SIGNING_KEY)),
            ondato_username=_value(config, ONDATO_USERNAME),
            ondato_password=_value(config, ONDATO_PASSWORD),
            ondato_client_id=_value(config, ONDATO_CLIENT_ID),
            ondato_client_secret=_value(config, ONDATO_CLIENT_SECRET),
            ondato_allowed_networks=_networks(config, ONDATO_ALLOWED_IPS),
            trusted_proxies=_networks(config, TRUSTED_PROXIES),
            idwise_token=_value(config, IDWISE_TOKEN),
            idwise_username=_value(config, IDWISE_USERNAME),
            idwise_password=_value(config, IDWISE_PASSWORD),
            idwise_header=_header(config, IDWISE_HEADER),
            max_body=max_body(config),
            read_timeout=_positive(config, READ_TIMEOUT, float, 10.0),
            token_ttl=_positive(config, ONDATO_TOKEN_TTL, int, 3600),
            header_timeout=_positive(config, HEADER_TIMEOUT, float, 10.0),
            keepalive_timeout=_positive(config, KEEPALIVE_TIMEOUT, float, 75.0),
            max_header_size=_positive(config, MAX_HEADER_SIZE, int, 8192, upto=65536),
            access_log=_flag(config, ACCESS_LOG, True),
        )


def _value(config: Mapping[str, str], key: str) -> str | None:
    raw = (config.get(key) or "").strip()
    return raw or None


def _items(config: Mapping[str, str], key: str) -> list[str]:
    raw = _value(config, key)
    return [item.strip() for item in raw.split(",") if item.strip()] if raw else []


def _networks(config: Mapping[str, str], key: str) -> tuple[Network, ...]:
    networks: list[Network] = []
    for item in _items(config, key):
        try:
            # strict=False: "10.0.0.7/24" means the /24 around it, as operators expect.
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{key}: {item!r} is not an IP address or CIDR network") from None
    return tuple(networks)


def _header(config: Mapping[str, str], key: str) -> tuple[str, str] | None:
    raw = _value(config, key)
    if raw is None:
        return None
    name, colon, value = raw.partition(":")
    name, value = name.strip(), value.strip()
    if not colon or not value or not _TOKEN.fullmatch(name):
        # The value is a secret, so the message describes the shape only.
        raise ValueError(f"{key} must have the form 'Header-Name: value'")
    return name, value


# Room for the envelope around a body: kept headers (at most 7 x 1,024 characters, JSON-escaped),
# dedup key, metadata and the record's own framing.
_ENVELOPE_ROOM = 128 * 1024


def record_limit(max_body: int) -> int:
    """The largest Kafka record an accepted webhook can make: the body travels as base64."""
    return (max_body + 2) // 3 * 4 + _ENVELOPE_ROOM


def max_body(config: Mapping[str, str]) -> int:
    """KYCFLOW_MAX_BODY; Kafka mode also sizes the raw topic's largest record from it."""
    return _positive(config, MAX_BODY, int, 1024 * 1024, upto=MAX_BODY_CAP)


def _positive(
    config: Mapping[str, str],
    key: str,
    convert: Callable[[str], Number],
    default: Number,
    upto: Number | None = None,
) -> Number:
    raw = _value(config, key)
    if raw is None:
        return default
    try:
        number: Number | None = convert(raw)
    except ValueError:
        number = None
    kind = "integer" if convert is int else "number"
    if number is None or not (number > 0 and math.isfinite(number)):
        raise ValueError(f"{key} must be a positive {kind}, got {raw!r}")
    if upto is not None and number > upto:
        raise ValueError(f"{key} must be a positive {kind} of at most {upto}, got {raw!r}")
    return number


def _flag(config: Mapping[str, str], key: str, default: bool) -> bool:
    raw = _value(config, key)
    if raw is None:
        return default
    if raw.lower() not in _FLAGS:
        raise ValueError(f"{key} must be true or false, got {raw!r}")
    return _FLAGS[raw.lower()]
