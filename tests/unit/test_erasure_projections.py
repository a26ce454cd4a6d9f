"""Erasure in the projections (issue 12, docs/personal-data.md), on real SQLite files:
what the processor writes and deletes, what the bytes of the file still hold, what a
replay of the log erasure leaves rebuilds, and Kafka mode's projector."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pydantic_core
import pytest
from sqlite_utils import Database

from ingest import appending, rawlog
from projections import listing, queries
from projections.schema import PROJECTION_TABLES, migrations, open_projections
from projections.store import ProjectionStore, States
from projections.topics import Record, TopicProjection
from statemachines import replay, step
from statemachines.codec import output_records
from statemachines.envelope import RawEnvelope
from statemachines.events import CanonicalEvent
from statemachines.fold import ERASURE, SubjectState
from statemachines.normalise import normalise, reduced_form
from statemachines.process import standing_transitions
from statemachines.reduced import erase_record
from streams.embedded.replay import rebuild
from tests import payloads as p

SCAN = "3af0b5c2-6ac8-11ee-b962-0242ac120002"
KEY = f"idenfy/kyc/{SCAN}"
OTHER = "idwise/kyc/journey-1"
SECRET, SECRET_TOO = "alice-7f3e9c-client", "alice-7f3e9c-external"
ERASED_AT = "2026-11-23T09:00:00.000000Z"
JUNK = ("ondato", {"Content-Type": "application/json"}, b'{"name": "Alice Unreadable"')


def webhooks() -> list[p.Webhook]:
    """Two subjects, two transitions each; the iDenfy one carries two references."""
    return [
        p.idenfy_identification(
            final=False, overall="REVIEWING", client_id=SECRET, external_ref=SECRET_TOO
        ),
        p.idwise("Finished User Steps", event_id="e1", systemDecision="Refer"),
        JUNK,
        p.idenfy_identification("IDENTIFICATION_MANUAL_FINISHED", overall="DENIED"),
        p.idwise("Finished Journey", event_id="e2", systemDecision="Complete"),
    ]


def erasure(offset: int, scope: str, dropped: tuple[int, ...] = ()) -> RawEnvelope:
    record = erase_record(
        KEY, scope=scope, keep_reference=False, by="cli", received_at=ERASED_AT, dropped=dropped
    )
    return record.at(offset)


def process(db: Database, envelopes: list[RawEnvelope]) -> ProjectionStore:
    store = ProjectionStore(db)
    store.process(envelopes)
    return store


def rows(db: Any, table: str, where: str = "", *params: Any) -> list[tuple[Any, ...]]:
    found: list[tuple[Any, ...]] = db.execute(f"SELECT * FROM {table} {where}", params).fetchall()
    return found


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    opened = open_projections(str(tmp_path / "kycflow.db"))
    yield opened
    opened.close()


def delivered() -> list[RawEnvelope]:
    return [p.deliver(w, n + 1) for n, w in enumerate(webhooks())]


class TestTheProcessor:
    def test_erasing_personal_data_keeps_the_trail_and_forgets_the_references(
        self, db: Database
    ) -> None:
        process(db, [*delivered(), erasure(6, "personal", dropped=(3,))])
        row = queries.verification(db, "idenfy", "kyc", SCAN)
        assert row is not None
        assert (row["status"], row["final"], row["decided_by"]) == ("rejected", True, "manual")
        assert (row["reference"], row["references"], row["erased_at"]) == (None, [], ERASED_AT)
        assert rows(db, "verification_references") == []
        assert queries.with_reference(db, SECRET) == []
        history = queries.history(db, "idenfy", "kyc", SCAN)
        assert history is not None and len(history["transitions"]) == 2
        assert history["events"][-1]["effect"] == ERASURE
        assert rows(db, "quarantine") == []  # the junk delivery it dropped
        other = queries.verification(db, "idwise", "kyc", "journey-1")
        assert other is not None and other["erased_at"] is None

    def test_erasing_everything_leaves_a_bare_row_and_its_note(self, db: Database) -> None:
        process(db, delivered())
        process(db, [erasure(6, "all")])
        history = queries.history(db, "idenfy", "kyc", SCAN)
        assert history is not None
        assert history["transitions"] == []
        assert [e["effect"] for e in history["events"]] == [ERASURE]
        found = history["verification"]
        assert (found["status"], found["version"], found["erased_at"]) == (None, 1, ERASED_AT)
        assert found["updated_at"] == ERASED_AT
        assert rows(db, "transitions", "WHERE subject = ?", OTHER) != []
        assert rows(db, "verification_references") == []

    def test_a_batch_with_the_deliveries_the_erasure_and_later_events_keeps_the_later(
        self, db: Database
    ) -> None:
        later = p.deliver(webhooks()[0], 7)  # a retry after everything was erased
        process(db, [*delivered(), erasure(6, "all"), later])
        history = queries.history(db, "idenfy", "kyc", SCAN)
        assert history is not None
        assert [(t["version"], t["offset"]) for t in history["transitions"]] == [(2, 7)]
        assert [e["offset"] for e in history["events"]] == [6, 7]
        assert history["verification"]["reference"] == SECRET

    def test_a_kyb_documents_row_is_left_bare_too(self, db: Database) -> None:
        document = p.ondato_document("Updated", status="Validated", webhook_id="d1")
        state = replay([p.deliver(document, 1)])
        [key] = state
        process(db, [p.deliver(document, 1)])
        record = erase_record(key, scope="all", keep_reference=False, by="cli",
                              received_at=ERASED_AT)  # fmt: skip
        process(db, [record.at(2)])
        [row] = rows(db, "documents")
        assert row == (key, "ondato", key.split("/", 2)[2], None, None, 0, 1, ERASED_AT)

    def test_a_delivery_reduced_to_nothing_is_not_quarantined(self, db: Database) -> None:
        junk = p.deliver(JUNK, 3)
        store = process(db, [replace(junk, body=b"", reduced="")])
        assert rows(db, "quarantine") == [] and store.checkpoint() == 3

    def test_the_states_read_back_from_the_table_carry_the_erasure(self, db: Database) -> None:
        process(db, [*delivered(), erasure(6, "all")])
        assert States(db)[KEY] == replay([*delivered(), erasure(6, "all")])[KEY]


class TestTheFile:
    def test_secure_delete_is_on(self, db: Database) -> None:
        assert db.execute("PRAGMA secure_delete").fetchone()[0] == 1

    @pytest.mark.parametrize("scope", ["personal", "all"])
    def test_no_byte_of_an_erased_reference_is_left(self, tmp_path: Path, scope: str) -> None:
        path = tmp_path / "kycflow.db"
        db = open_projections(str(path))
        for envelope in delivered():  # one commit each: many versions of each page
            process(db, [envelope])
        assert _holds(tmp_path, SECRET)  # the scan sees the reference while it is there
        process(db, [erasure(6, scope)])
        assert not _holds(tmp_path, SECRET) and not _holds(tmp_path, SECRET_TOO)
        db.close()
        assert not _holds(tmp_path, SECRET)


def _holds(directory: Path, value: str) -> bool:
    needle = value.encode()
    return any(needle in path.read_bytes() for path in directory.iterdir() if path.is_file())


class TestReplay:
    """The raw log as an erasure leaves it (reduced rows, then the erasure record) rebuilds
    the tables the live processor holds."""

    @pytest.mark.parametrize("scope", ["personal", "all"])
    def test_rebuilds_the_live_tables(self, tmp_path: Path, scope: str) -> None:
        raw = tmp_path / "kycflow.raw.db"
        writer = appending.RawLogWriter(raw)
        writer.append([p.deliver(w) for w in webhooks()])
        live = open_projections(str(tmp_path / "kycflow.db"))
        _follow(live, raw)
        with contextlib.closing(rawlog.connect(raw, readonly=True)) as conn:
            mine = [e for e in rawlog.iterate(conn) if _subject(e) == KEY]
        wiped = standing_transitions(mine) if scope == "all" else ()
        assert scope == "personal" or wiped  # the case that numbers the feed with gaps
        _reduce(raw, scope)
        writer.append([erase_record(KEY, scope=scope, keep_reference=False, by="cli",
                                    received_at=ERASED_AT, dropped=(3,), wiped=wiped)])  # fmt: skip
        writer.close()
        _follow(live, raw)
        assert rebuild(raw, str(tmp_path / "replayed.db")) == 6
        replayed = open_projections(str(tmp_path / "replayed.db"))
        assert _tables(replayed) == _tables(live)  # feed positions (seq) included
        assert rows(live, "quarantine") == [] and _erased(live) == ERASED_AT


def _follow(db: Database, raw: Path) -> None:
    """What the embedded processor does: everything after the checkpoint, in log order."""
    store = ProjectionStore(db)
    with contextlib.closing(rawlog.connect(raw, readonly=True)) as conn:
        store.process(rawlog.read_after(conn, store.checkpoint(), 1000))


def _reduce(raw: Path, scope: str) -> None:
    """What erasure does to the raw log: the subject's deliveries reduced to their events
    (or to nothing) and the junk delivery that named it to nothing."""
    with contextlib.closing(rawlog.connect(raw)) as conn:
        envelopes = rawlog.read_after(conn, 0, 100)
        for env in envelopes:
            event = normalise(env)
            mine = isinstance(event, CanonicalEvent) and event.subject.key == KEY
            if env.offset == 3 or mine:
                kept = reduced_form(env) if mine and scope == "personal" else ""
                conn.execute("INSERT INTO reduced VALUES (?, ?)", (env.offset, kept))
                conn.execute("UPDATE raw_log SET body = x'', headers = '{}' WHERE \"offset\" = ?",
                             (env.offset,))  # fmt: skip


def _tables(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    found = {t: sorted(rows(db, t), key=repr) for t in PROJECTION_TABLES}
    found["verification_references"] = rows(db, "verification_references")
    found["transitions"] = rows(db, "transitions", "ORDER BY seq")
    return found


def _subject(env: RawEnvelope) -> str | None:
    event = normalise(env)
    return event.subject.key if isinstance(event, CanonicalEvent) else None


def _erased(db: Database) -> str:
    row = queries.verification(db, "idenfy", "kyc", SCAN)
    assert row is not None
    return str(row["erased_at"])


class TestTheKafkaProjector:
    def records(self, envelopes: list[RawEnvelope]) -> dict[str, list[Any]]:
        states: dict[str, SubjectState] = {}
        by_kind: dict[str, list[Any]] = {}
        for env in envelopes:
            result = step(env, states)
            if result.outcome is not None:
                states[result.outcome.state.subject.key] = result.outcome.state
            for kind, _, record in output_records(*result):
                by_kind.setdefault(kind, []).append(record)
        return by_kind

    def apply(self, projection: TopicProjection, kind: str, records: list[Any]) -> None:
        projection.apply(
            [Record(kind, kind, 0, n, pydantic_core.to_json(r)) for n, r in enumerate(records)]
        )

    def test_a_later_transition_of_the_same_version_replaces_the_erased_one(
        self, db: Database
    ) -> None:
        """After an erasure of everything versions count from 1 again. The transitions
        topic may be read before the status record that erased: the new version-2
        transition must not be ignored as a repeat of the old one."""
        later = p.deliver(webhooks()[0], 7)
        by_kind = self.records([*delivered(), erasure(6, "all"), later])
        projection = TopicProjection(db)
        self.apply(projection, "transitions", by_kind["transitions"])
        self.apply(projection, "annotations", by_kind["annotations"])
        self.apply(projection, "status", by_kind["status"])
        self.apply(projection, "transitions", by_kind["transitions"])  # redelivered: stale
        history = queries.history(db, "idenfy", "kyc", SCAN)
        assert history is not None
        assert [(t["version"], t["offset"]) for t in history["transitions"]] == [(2, 7)]
        assert [e["offset"] for e in history["events"]] == [6, 7]

    def test_a_quarantine_record_after_the_erasure_that_dropped_it_stays_out(
        self, db: Database
    ) -> None:
        by_kind = self.records([*delivered(), erasure(6, "personal", dropped=(3,))])
        projection = TopicProjection(db)
        self.apply(projection, "annotations", by_kind["annotations"])
        self.apply(projection, "quarantine", by_kind["quarantine"])
        assert rows(db, "quarantine") == []


def test_a_database_from_before_erasure_is_migrated_and_resumes(tmp_path: Path) -> None:
    path = str(tmp_path / "old.db")
    old = Database(path)
    migrations.apply(old, stop_before="verifications_erased")
    old.close()
    db = open_projections(path)
    process(db, delivered())
    process(db, [erasure(6, "personal")])
    assert _erased(db) == ERASED_AT
    page = listing.page(db, listing.Listing())
    assert {item["erased_at"] for item in page["items"]} == {None, ERASED_AT}
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT fold_erased_before FROM verifications").fetchall() == [
            (None,),
            (None,),
        ]
