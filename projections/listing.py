"""`GET /verifications`: the listing's parameters, checked, and its keyset-paginated query.

Every parameter is checked before the database is read, so a mistyped filter is a 400
that says what is allowed, never an empty page that looks like "no such verifications".
`reference` finds a verification by any of the integrator's ids it carries, `id` by the
provider's id whatever the kind (an iDenfy scanRef, an Ondato IDV id …).
Two orders: `key` (subject key, the default: stable under concurrent writes) and `newest`
(most recently changed first, by `updated_at`). Either way the cursor is the last row's
sort key, so pages stay consistent while the processor writes (no row skipped or
repeated because rows were added before it, unlike OFFSET).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, NamedTuple

from projections.queries import (
    SUBJECTS_WITH_REFERENCE,
    VERIFICATION_FIELDS,
    Connection,
    columns,
    rows,
    subject_key,
)
from statemachines.envelope import PROVIDERS
from statemachines.events import MAX_REFERENCE
from statemachines.machines import KINDS, LIFECYCLES

STATUSES = tuple(sorted({status for lc in LIFECYCLES.values() for status in lc.statuses}))
FILTERS: dict[str, tuple[str, ...]] = {"provider": PROVIDERS, "kind": KINDS, "status": STATUSES}
ORDERS = ("key", "newest")
DEFAULT_LIMIT, MAX_LIMIT = 50, 500
LOOKUPS = ("reference", "id")  # free text, matched exactly
PARAMETERS = (*FILTERS, *LOOKUPS, "limit", "cursor", "order", "updated_since")
# `received_at` as ingest writes it; fixed width, so text order is time order.
_STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


class Listing(NamedTuple):
    """One listing request, every field already checked."""

    provider: str | None = None
    kind: str | None = None
    status: str | None = None
    limit: int = DEFAULT_LIMIT
    cursor: str | None = None
    order: str = "key"
    updated_since: str | None = None  # as `received_at` text
    reference: str | None = None
    id: str | None = None


def parse(pairs: Iterable[tuple[str, str]]) -> Listing:
    """The listing a query string asks for; ValueError with the reason for anything else.

    Unknown parameters are ignored (as HTTP APIs usually do); a known one given twice, or
    empty, is refused: which of two values would win is a guess a client should not make.
    """
    given: dict[str, str] = {}
    for name, value in pairs:
        if name not in PARAMETERS:
            continue
        if name in given:
            raise ValueError(f"{name} is given more than once")
        given[name] = value
    for name, allowed in FILTERS.items():
        if name in given and given[name] not in allowed:
            raise ValueError(f"{name} must be one of: {', '.join(allowed)}")
    for name in LOOKUPS:
        if given.get(name) == "":
            raise ValueError(f"{name} must not be empty")
    if len(given.get("reference", "")) > MAX_REFERENCE:
        raise ValueError(f"reference is at most {MAX_REFERENCE} characters (no longer one is kept)")
    order = given.get("order", "key")
    if order not in ORDERS:
        raise ValueError(f"order must be one of: {', '.join(ORDERS)}")
    cursor = given.get("cursor")
    if cursor is not None:
        decode_cursor(cursor, order)
    since = given.get("updated_since")
    return Listing(
        provider=given.get("provider"),
        kind=given.get("kind"),
        status=given.get("status"),
        limit=_limit(given.get("limit")),
        cursor=cursor,
        order=order,
        updated_since=None if since is None else parse_time(since),
        reference=given.get("reference"),
        id=given.get("id"),
    )


def _limit(text: str | None) -> int:
    if text is None:
        return DEFAULT_LIMIT
    # isdigit alone admits other scripts' digits; a bounded length keeps int() cheap.
    if not (text.isascii() and text.isdigit() and len(text) <= 6) or not (
        1 <= int(text) <= MAX_LIMIT
    ):
        raise ValueError(f"limit must be a whole number from 1 to {MAX_LIMIT}")
    return int(text)


def parse_time(text: str) -> str:
    """An ISO-8601 / RFC 3339 time as ingest writes `received_at` (UTC, microseconds), so
    that it compares with stored times as text. A time without an offset is UTC."""
    try:
        moment = datetime.fromisoformat(text.strip().upper().replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)  # the log's clock is UTC
        moment = moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise ValueError(
            "updated_since must be an ISO-8601 time, e.g. 2026-11-22T10:00:00Z"
        ) from None
    # Not strftime: it does not zero-pad years before 1000, which would break text order.
    return moment.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def encode_cursor(row: dict[str, Any], order: str) -> str:
    key = row["subject"] if order == "key" else f"{row['updated_at']} {row['subject']}"
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, order: str = "key") -> tuple[str, ...]:
    """The sort key inside a cursor made for `order`; ValueError for anything else."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        text = base64.urlsafe_b64decode(padded.encode("ascii")).decode("utf-8")
    except (UnicodeError, binascii.Error):
        raise ValueError("invalid cursor") from None
    parts = tuple(text.split(" ", 1)) if order == "newest" else (text,)
    subject = parts[-1]
    valid = (
        len(parts) == (2 if order == "newest" else 1)
        and (order == "key" or _STAMP.fullmatch(parts[0]) is not None)
        and subject.split("/", 1)[0] in PROVIDERS
        and subject.count("/") >= 2
    )
    # urlsafe_b64decode skips stray characters; a round trip rejects every non-canonical form.
    if not valid or base64.urlsafe_b64encode(text.encode()).decode().rstrip("=") != cursor:
        raise ValueError(f"invalid cursor for order={order}")
    return parts


def page(db: Connection, listing: Listing) -> dict[str, Any]:
    """One page of verifications; `next_cursor` is None on the last page."""
    clauses, params = _lookup(listing)
    # A lookup's few subjects drive the query; `+` keeps SQLite from scanning another
    # index for the other conditions instead (it did, for provider= and status=).
    plain = "+" if clauses else ""
    for column in FILTERS:
        value = getattr(listing, column)
        if value is not None:
            clauses.append(f"{plain}{column} = ?")
            params.append(value)
    if listing.updated_since is not None:
        clauses.append(f"{plain}updated_at >= ?")
        params.append(listing.updated_since)
    newest = listing.order == "newest"
    if listing.cursor is not None:
        # Every fold sets updated_at, so it is never NULL in a row: row values compare.
        after = f"({plain}updated_at, {plain}subject) < (?, ?)" if newest else f"{plain}subject > ?"
        clauses.append(after)
        params.extend(decode_cursor(listing.cursor, listing.order))
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    order = "updated_at DESC, subject DESC" if newest else "subject"
    found = rows(
        db,
        f"SELECT subject, {columns(VERIFICATION_FIELDS)} FROM verifications {where} "
        f"ORDER BY {order} LIMIT ?",
        (*params, listing.limit + 1),  # one extra row tells whether another page exists
    )
    items = found[: listing.limit]
    more = len(found) > listing.limit
    next_cursor = encode_cursor(items[-1], listing.order) if more else None
    for item in items:
        del item["subject"]
    return {"items": items, "next_cursor": next_cursor}


def _lookup(listing: Listing) -> tuple[list[str], list[str]]:
    """The conditions (and their parameters) for `reference` and `id`, both by index."""
    clauses, params = [], []
    if listing.reference is not None:  # the primary reference or any other
        clauses.append(f"subject IN ({SUBJECTS_WITH_REFERENCE})")
        params += [listing.reference, listing.reference]
    if listing.id is not None:
        # The id is the last part of the subject key: one key per provider and kind, so
        # no index on `id` for every write to maintain.
        keys = [
            subject_key(provider, kind, listing.id)
            for provider in ([listing.provider] if listing.provider else PROVIDERS)
            for kind in ([listing.kind] if listing.kind else KINDS)
        ]
        clauses.append(f"subject IN ({', '.join('?' * len(keys))})")
        params += keys
    return clauses, params
