"""`kycflow inspect PROVIDER KIND ID`: why a verification is in its state.

Prints the subject's projection, then its timeline: every raw delivery that reached it
(offset, receive time, dedup key, whether ingest flagged it a duplicate), what the core
made of it (canonical status and ordering facts), and what it did — the transition, or
the reason it changed nothing (duplicate, late, superseded, history, unknown).

`kycflow inspect --reference REF` does that for every subject that carries your own id REF
(iDenfy clientId or externalRef, Ondato externalReferenceId, IDWise referenceNo).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ingest import rawlog
from projections import queries
from statemachines import CanonicalEvent, RawEnvelope, normalise

Raw = Callable[[list[int]], dict[int, RawEnvelope]]


def timeline(
    db_path: str, provider: str, kind: str, subject_id: str, raw: Raw | None = None
) -> dict[str, Any] | None:
    """The projection and timeline; raw deliveries come from `raw(offsets)` (Kafka mode)
    or else the embedded raw log beside the database. The projection and each step's
    fields are those of the HTTP API (`final` a boolean, `reasons` a list)."""
    with _reading(db_path) as db:
        found = queries.history(db, provider, kind, subject_id)
    if found is None:
        return None
    events = found["events"]
    envelopes = (raw or rawlog.reader(db_path))([e["offset"] for e in events])
    steps = []
    for event in events:
        env = envelopes.get(event["offset"])
        canonical = normalise(env) if env is not None else None
        steps.append({**event, "envelope": env, "canonical": canonical})
    return {"projection": found["verification"], "timeline": steps}


def with_reference(db_path: str, reference: str, raw: Raw | None = None) -> list[dict[str, Any]]:
    """`timeline` of every subject whose reference, or one of whose other references, is
    `reference`, by subject key."""
    with _reading(db_path) as db:
        subjects = queries.with_reference(db, reference)
    found = (timeline(db_path, *subject, raw) for subject in subjects)
    return [one for one in found if one is not None]


def _reading(db_path: str) -> contextlib.closing[sqlite3.Connection]:
    uri = f"{Path(db_path).absolute().as_uri()}?mode=ro"  # read only: never creates it
    return contextlib.closing(sqlite3.connect(uri, uri=True))


def render(found: dict[str, Any], console: Console) -> None:
    projection = found["projection"]
    subject = queries.subject_key(projection["provider"], projection["kind"], projection["id"])
    summary = Table(title=escape(subject), show_header=False)
    for key in (
        "reference",
        "references",
        "status",
        "final",
        "decided_by",
        "attempt",
        "provider_status",
        "reasons",
        "version",
        "updated_at",
        "cause_event",
        "cause_offset",
    ):
        summary.add_row(key, escape(str(projection[key])))
    console.print(summary)
    table = Table(title="timeline (log order)")
    for column in ("offset", "received", "event", "dedup", "asserts", "order", "effect"):
        table.add_column(column)
    for step in found["timeline"]:
        env, canonical = step["envelope"], step["canonical"]
        asserts, order = "-", "-"
        if isinstance(canonical, CanonicalEvent):
            asserts = canonical.status or "(no status)"
            o = canonical.order
            order = f"attempt={o.attempt} class={o.klass} time={o.time} rank={o.rank}"
        flag = " (ingest: duplicate)" if env is not None and env.duplicate else ""
        effect = step["effect"] if step["effect"] == "transition" else f"[yellow]{step['effect']}"
        # Values come from provider bodies and the command line: never read as rich markup.
        table.add_row(
            str(step["offset"]),
            step["received_at"],
            escape(step["event_type"]),
            escape((env.dedup_key[:40] if env else "?") + flag),
            escape(asserts),
            order,
            f"{effect}: {escape(str(step['reason']))}",
        )
    console.print(table)


def render_all(reference: str, found: list[dict[str, Any]], console: Console) -> None:
    """Subjects carrying `reference`: a list of them, then each one as `render` shows it."""
    listing = Table(title=escape(f"reference {reference}"))
    for column in ("subject", "reference", "status", "final", "updated_at"):
        listing.add_column(column)
    for one in found:
        p = one["projection"]
        subject = queries.subject_key(p["provider"], p["kind"], p["id"])
        cells = (subject, p["reference"], p["status"], p["final"], p["updated_at"])
        listing.add_row(*(escape(str(cell)) for cell in cells))
    console.print(listing)
    for one in found:
        render(one, console)


def as_json(found: dict[str, Any]) -> str:
    return json.dumps(_plain(found), indent=2)


def all_as_json(reference: str, found: list[dict[str, Any]]) -> str:
    return json.dumps(
        {"reference": reference, "subjects": [_plain(one) for one in found]}, indent=2
    )


def _plain(found: dict[str, Any]) -> dict[str, Any]:
    def step(one: dict[str, Any]) -> dict[str, Any]:
        canonical = one["canonical"]
        return {k: v for k, v in one.items() if k not in ("envelope", "canonical")} | {
            "asserts": canonical.status if isinstance(canonical, CanonicalEvent) else None
        }

    return {"projection": found["projection"], "timeline": [step(s) for s in found["timeline"]]}
