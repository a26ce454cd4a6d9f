"""Dedup keys (design.md §5.1): one per delivery, computed at ingest from the raw bytes.

IDWise sends `body.eventId` and keeps it across retries; its 2022-2023 bodies have none, so
their content stands in (the parsed JSON in a canonical form: a retry that re-serialises
the same body is still a duplicate). Ondato's envelope `id` is the webhook id. iDenfy has
no delivery id and signs only the body — not the `Idenfy-Event-Type` header — so the signed
bytes are the delivery: the same body under another header is the same delivery, not a new
one. Anything unreadable falls back to the body hash, which is always defined.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from statemachines.payload import dig, get_ci, parse_object, text


def dedup_key(provider: str, headers: Mapping[str, str], body: bytes, body_sha256: str) -> str:
    if provider == "idenfy":  # headers play no part: they are not signed
        return idenfy_key(body_sha256)
    doc = parse_object(body)
    if isinstance(doc, dict):
        if provider == "idwise":
            event_id = text(dig(doc, "body"), "eventId")
            if event_id:
                return f"idwise:event:{event_id}"
            content = _content_hash(doc)
            if content:
                return f"idwise:content:{content}"
        elif provider == "ondato":
            webhook_id = text(get_ci(doc, "id"), ci=True)
            if webhook_id:
                return f"ondato:webhook:{webhook_id}"
    return f"{provider}:sha256:{body_sha256}"


def idenfy_key(body_sha256: str) -> str:
    """An iDenfy delivery's key: the hash of the signed bytes alone."""
    return f"idenfy:sha256:{body_sha256}"


def _content_hash(doc: dict[str, Any]) -> str | None:
    """sha256 of the JSON with sorted keys and no insignificant whitespace."""
    try:
        canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except (RecursionError, TypeError, ValueError):
        return None
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()
