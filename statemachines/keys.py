"""Dedup keys (design.md §5.1): one per delivery, computed at ingest from the raw bytes.

IDWise sends `body.eventId` and keeps it across retries; Ondato's envelope `id` is the
webhook id; iDenfy has no delivery id, so the event-type header plus the body's sha256
stands in. Anything unreadable falls back to the body hash, which is always defined.
"""

from __future__ import annotations

from collections.abc import Mapping

from statemachines.payload import dig, get_ci, parse_object, text


def dedup_key(provider: str, headers: Mapping[str, str], body: bytes, body_sha256: str) -> str:
    if provider == "idenfy":  # no delivery id exists, readable body or not
        event_type = headers.get("idenfy-event-type", "").strip().upper() or "-"
        return f"idenfy:{event_type}:{body_sha256}"
    doc = parse_object(body)
    if isinstance(doc, dict):
        if provider == "idwise":
            event_id = text(dig(doc, "body"), "eventId")
            if event_id:
                return f"idwise:event:{event_id}"
        elif provider == "ondato":
            webhook_id = text(get_ci(doc, "id"), ci=True)
            if webhook_id:
                return f"ondato:webhook:{webhook_id}"
    return f"{provider}:sha256:{body_sha256}"
