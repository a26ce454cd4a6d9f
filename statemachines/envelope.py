"""The raw envelope: what ingest stores for every accepted webhook (design.md §3).

It is the one type ingest and the core share. The body is kept as the exact bytes
received, because signatures cover those bytes and iDenfy's event type lives only in a
header, so the headers that matter are kept too — never credential values.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import pydantic_core

from statemachines.keys import dedup_key

PROVIDERS = ("idenfy", "ondato", "idwise")

# Allow-list, not deny-list: custom headers may carry secrets (IDWise "custom key"
# authentication), so only headers known to be harmless and useful are kept.
KEPT_HEADERS = frozenset(
    {
        "content-type",
        "content-length",
        "user-agent",
        "idenfy-event-type",
        "idenfy-signature",
        "ondato-signature",
        "x-request-id",
    }
)


def keep_headers(headers: Iterable[tuple[str, str]] | Mapping[str, str]) -> dict[str, str]:
    """Lower-cased allow-listed headers; credential headers never pass."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return {
        name.lower(): _valid_text(value) for name, value in pairs if name.lower() in KEPT_HEADERS
    }


def _valid_text(value: str) -> str:
    """Servers may decode undecodable header bytes to lone surrogates; store valid UTF-8."""
    return value.encode("utf-8", "replace").decode("utf-8")


@dataclass(frozen=True, slots=True)
class RawEnvelope:
    provider: str
    body: bytes
    headers: Mapping[str, str]
    received_at: str  # ISO-8601 UTC from the ingest clock, e.g. 2026-11-22T15:12:58.123456Z
    dedup_key: str
    body_sha256: str
    auth_method: str = ""
    remote_addr: str = ""
    offset: int = -1  # assigned by the log when the envelope is appended
    duplicate: bool = field(default=False, compare=False)
    # Set when the personal data is gone (erasure, retention): the body is empty and this is
    # the canonical event it had become (`statemachines.codec.event_to_json`), or "" when
    # nothing was kept. The fold reads it instead of the body, so replay still works.
    reduced: str | None = field(default=None, compare=False)

    @classmethod
    def receive(
        cls,
        provider: str,
        body: bytes,
        headers: Iterable[tuple[str, str]] | Mapping[str, str],
        received_at: str,
        *,
        auth_method: str = "",
        remote_addr: str = "",
    ) -> RawEnvelope:
        """Build the envelope ingest appends: filters headers, hashes, derives the dedup key."""
        kept = keep_headers(headers)
        sha = hashlib.sha256(body).hexdigest()
        return cls(
            provider=provider,
            body=body,
            headers=kept,
            received_at=received_at,
            dedup_key=dedup_key(provider, kept, body, sha),
            body_sha256=sha,
            auth_method=auth_method,
            remote_addr=remote_addr,
        )

    def at(self, offset: int, *, duplicate: bool = False) -> RawEnvelope:
        """The same envelope as stored at `offset` of the log."""
        return replace(self, offset=offset, duplicate=duplicate)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


def envelope_to_json(env: RawEnvelope) -> bytes:
    """Wire form for the Kafka topic `kycflow.raw` (body base64: it may not be UTF-8)."""
    return pydantic_core.to_json(
        {
            "provider": env.provider,
            "body": base64.b64encode(env.body).decode("ascii"),
            "headers": dict(env.headers),
            "received_at": env.received_at,
            "dedup_key": env.dedup_key,
            "body_sha256": env.body_sha256,
            "auth_method": env.auth_method,
            "remote_addr": env.remote_addr,
            "offset": env.offset,
            "duplicate": env.duplicate,
        }
    )


_REQUIRED = ("provider", "body", "received_at", "dedup_key", "body_sha256")


def envelope_from_json(data: bytes) -> RawEnvelope:
    """Inverse of `envelope_to_json`; raises ValueError on a malformed record."""
    raw: Any = pydantic_core.from_json(data)
    if not isinstance(raw, dict):
        raise ValueError("envelope record is not a JSON object")
    missing = [name for name in _REQUIRED if not isinstance(raw.get(name), str)]
    if missing:
        raise ValueError(f"malformed envelope record: {', '.join(missing)} must be strings")
    try:
        return RawEnvelope(
            provider=str(raw["provider"]),
            body=base64.b64decode(raw["body"], validate=True),
            headers={str(k): str(v) for k, v in dict(raw["headers"]).items()},
            received_at=str(raw["received_at"]),
            dedup_key=str(raw["dedup_key"]),
            body_sha256=str(raw["body_sha256"]),
            auth_method=str(raw.get("auth_method", "")),
            remote_addr=str(raw.get("remote_addr", "")),
            offset=int(raw.get("offset", -1)),
            duplicate=bool(raw.get("duplicate", False)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"malformed envelope record: {exc}") from exc


UNREADABLE = "unreadable"  # provider of a log record that is not an envelope at all


def envelope_from_record(data: bytes, offset: int) -> RawEnvelope:
    """A `kycflow.raw` record as the envelope to fold, stored at `offset`.

    A record that is not an envelope (written by something other than kycflow's ingest)
    becomes an envelope of provider `unreadable` with the record as its body: the core
    quarantines it, so it stays visible and replayable instead of stopping a worker.
    """
    try:
        return envelope_from_json(data).at(offset)
    except ValueError:
        sha = hashlib.sha256(data).hexdigest()
        return RawEnvelope(
            UNREADABLE, data, {}, "", f"{UNREADABLE}:sha256:{sha}", sha, offset=offset
        )
