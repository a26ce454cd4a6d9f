"""Database roles (projections.locking) between real processes, on real files."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sqlite3
import time
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path

import pytest

from projections.locking import Claim, DatabaseInUse, Role, claim, lock_path
from projections.schema import open_projections

fork = multiprocessing.get_context("fork")


Refusal = tuple[str, int | None]  # the message and the pid it names


def _refusal(db: Path, role: Role) -> Refusal | None:
    """Claim `role` from another process; the refusal it met, if any."""
    results: multiprocessing.Queue[Refusal | None] = fork.Queue()

    def attempt() -> None:
        try:
            claim(db, role).release()
            results.put(None)
        except DatabaseInUse as exc:
            results.put((str(exc), exc.pid))

    child = fork.Process(target=attempt)
    child.start()
    child.join(10)
    return results.get(timeout=5)


def test_a_held_role_is_refused_at_once_naming_the_database_and_the_holder(
    tmp_path: Path,
) -> None:
    db = tmp_path / "kycflow.db"
    with claim(db, Role.SERVE, Role.WRITER):
        started = time.monotonic()
        refusal = _refusal(db, Role.SERVE)
        assert time.monotonic() - started < 2
        assert refusal is not None and refusal[1] == os.getpid()
        message = refusal[0]
        assert str(db.resolve()) in message and f"pid {os.getpid()}" in message
        assert "\n" not in message
        assert _refusal(db, Role.WRITER) is not None


def test_serve_and_writer_roles_coexist_and_the_last_to_leave_removes_the_file(
    tmp_path: Path,
) -> None:
    db = tmp_path / "kycflow.db"
    serving = claim(db, Role.SERVE)  # Kafka mode: serve reads, project writes
    writing = claim(db, Role.WRITER)
    assert lock_path(db).exists()
    serving.release()
    assert lock_path(db).exists()  # still held by the writer
    assert _refusal(db, Role.SERVE) is None  # free again
    writing.release()
    assert list(tmp_path.iterdir()) == []


def test_a_symbolic_link_to_the_database_shares_its_lock(tmp_path: Path) -> None:
    db = tmp_path / "kycflow.db"
    (tmp_path / "alias.db").symlink_to(db)
    with claim(db, Role.SERVE):
        refusal = _refusal(tmp_path / "alias.db", Role.SERVE)
        assert refusal is not None and str(db) in refusal[0]


def _holder_with_a_child(db: Path, pids: multiprocessing.Queue[int]) -> None:
    """Claim, fork a child that keeps running, and exit without releasing anything."""
    claim(db, Role.WRITER)
    child = fork.Process(target=time.sleep, args=(60,))
    child.start()
    pids.put(child.pid or 0)
    pids.close()
    pids.join_thread()  # sent before the abrupt exit
    os._exit(0)


def test_forked_children_keep_the_role_until_the_last_of_them_exits(tmp_path: Path) -> None:
    db = tmp_path / "kycflow.db"
    pids: multiprocessing.Queue[int] = fork.Queue()
    holder = fork.Process(target=_holder_with_a_child, args=(db, pids))
    holder.start()
    child = pids.get(timeout=10)
    deadline = time.monotonic() + 10
    while holder.exitcode is None:  # not join(): the child shares its exit pipe
        assert time.monotonic() < deadline
        time.sleep(0.01)
    try:
        refusal = _refusal(db, Role.WRITER)
        assert refusal is not None and refusal[1] == holder.pid  # the claimer's pid
    finally:
        os.kill(child, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while _refusal(db, Role.WRITER) is not None:  # the kernel released it at exit
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_releasing_a_role_leaves_sqlite_locks_of_the_same_process_alone(tmp_path: Path) -> None:
    """The reason the lock is a separate file: closing any descriptor of the database
    would drop every POSIX lock the process holds on it, SQLite's included."""
    db = tmp_path / "kycflow.db"
    sqlite3.connect(db).close()
    mine = sqlite3.connect(db, isolation_level=None)
    mine.execute("BEGIN IMMEDIATE")  # a write lock held by this process
    claim(db, Role.WRITER).release()
    other = sqlite3.connect(db, timeout=0, isolation_level=None)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        other.execute("BEGIN IMMEDIATE")
    mine.execute("ROLLBACK")
    other.close()
    mine.close()


def _contend(db: Path, holders: Synchronized[int], overlaps: Synchronized[int]) -> None:
    for _ in range(300):
        with contextlib.suppress(DatabaseInUse):
            held: Claim = claim(db, Role.WRITER, patience=0.05)
            with holders.get_lock():
                holders.value += 1
                overlaps.value += holders.value > 1
            with holders.get_lock():
                holders.value -= 1
            held.release()


def test_contending_claims_never_overlap_and_leave_no_file(tmp_path: Path) -> None:
    """Claims racing releases that remove the file: a claim on a file being removed must
    not count."""
    db = tmp_path / "kycflow.db"
    holders, overlaps = fork.Value("i", 0), fork.Value("i", 0)
    racers = [fork.Process(target=_contend, args=(db, holders, overlaps)) for _ in range(4)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join(60)
        assert racer.exitcode == 0
    assert overlaps.value == 0
    assert list(tmp_path.iterdir()) == []


def _open(path: str) -> None:
    open_projections(path).close()


def test_concurrent_first_opens_leave_only_the_database(tmp_path: Path) -> None:
    db = tmp_path / "kycflow.db"
    Path(f"{db}.migrate-lock").touch()  # what earlier versions left behind
    openers = [fork.Process(target=_open, args=(str(db),)) for _ in range(4)]
    for opener in openers:
        opener.start()
    for opener in openers:
        opener.join(30)
        assert opener.exitcode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kycflow.db"]
