"""The projections database can be opened by several processes at once on first start
(Kafka mode: `serve` and `project` share it): one migrates, the others wait. A database
from an earlier version is migrated in place."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from sqlite_utils import Database

from projections import queries
from projections.schema import PROJECTION_TABLES, migrations, open_projections
from projections.store import VERIFICATION_COLUMNS, ProjectionStore, States, verification_row
from statemachines import replay
from tests import payloads as p

SCAN = "3af0b5c2-6ac8-11ee-b962-0242ac120002"  # the sample identification's scanRef


def _open(path: str, results: multiprocessing.Queue[str]) -> None:
    try:
        open_projections(path).close()
        results.put("ok")
    except Exception as exc:
        results.put(repr(exc))


def test_concurrent_first_opens_all_succeed(tmp_path: Path) -> None:
    fork = multiprocessing.get_context("fork")
    for round_ in range(10):
        path = str(tmp_path / f"round{round_}.db")
        results: multiprocessing.Queue[str] = fork.Queue()
        openers = [fork.Process(target=_open, args=(path, results)) for _ in range(4)]
        for opener in openers:
            opener.start()
        for opener in openers:
            opener.join(30)
        assert [results.get(timeout=5) for _ in openers] == ["ok"] * 4
        db = open_projections(path)
        assert set(PROJECTION_TABLES) <= set(db.table_names())
        db.close()


def test_a_database_from_before_the_references_gains_them_from_later_events(
    tmp_path: Path,
) -> None:
    """Rows written before the migration have no reference (replay fills them); the
    processor resumes them and the next event's references are stored and found."""
    path = str(tmp_path / "old.db")
    old = Database(path)
    migrations.apply(old, stop_before="verification_references")
    first = p.deliver(p.idenfy_identification(final=False, client_id="c-1"), 1, p.RECEIVED_AT)
    state = replay([first])[f"idenfy/kyc/{SCAN}"]
    columns = VERIFICATION_COLUMNS.split(', reference, "references"')[0]
    old.execute(f"INSERT INTO verifications ({columns}) VALUES ({', '.join('?' * 19)})",
                verification_row(state)[:19])  # fmt: skip
    old.conn.commit()
    old.close()

    db = open_projections(path)
    key = f"idenfy/kyc/{SCAN}"
    assert States(db)[key] == state._replace(reference=None, references=())
    later = p.idenfy_identification("IDENTIFICATION_MANUAL_FINISHED", external_ref="x-9")
    ProjectionStore(db).process([p.deliver(later, 2, p.RECEIVED_AT)])
    row = queries.verification(db, "idenfy", "kyc", SCAN)
    assert row is not None and (row["reference"], row["references"]) == (
        "client-42",
        ["client-42", "x-9"],
    )
    for reference in ("client-42", "x-9"):
        assert queries.with_reference(db, reference) == [("idenfy", "kyc", SCAN)]
    assert queries.with_reference(db, "c-1") == []  # only a replay of the log brings it back
    db.close()
