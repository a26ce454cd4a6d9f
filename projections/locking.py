"""Who may use a database at once: one `serve`, one writer of the projections, and one
migration at a time.

Roles: `serve` (one service per database, either mode) and `writer` (the one process that
writes the projections: embedded `serve`'s processor, Kafka-mode `project`, `replay`). Kafka
mode's `serve` and `project` share a database, so they hold one role each; an embedded
`serve`, and `replay` on the file it rebuilds, hold both. A second claim of a held role
fails at once, naming the holder's pid.

Each role is a Linux OFD lock on one byte of `<db>.lock`, a file beside the database that
exists only while someone holds a role. Not a lock on the database itself: SQLite uses POSIX
locks there, and closing *any* descriptor of a file drops all of the process's POSIX locks
on it, so our own descriptor on the database could silently unlock a live connection. OFD
locks belong to the open file description instead: forked children (the supervisor's writer,
processor and HTTP workers) share them, closing other descriptors leaves them alone, and the
kernel drops them when the last process holding the description exits, however it exits.

The holder's pid: OFD locks record none (F_OFD_GETLK reports -1), so a holder also locks
byte `(role + 1) * 2**32 + pid`, and F_OFD_GETLK over that range finds it as an offset.

No stray file: whoever leaves last locks every role byte, which proves no one else holds
one, and removes the file before letting go. Someone who opened the file just before would
then lock a deleted file, so every lock is followed by a check that the path still names
the file locked, and a new attempt if not. (`tidy` does the same for SQLite's -wal and
-shm files once a database is no longer in use.)
"""

from __future__ import annotations

import contextlib
import enum
import errno
import fcntl
import os
import sqlite3
import struct
import time
from collections.abc import Iterator
from pathlib import Path

_FLOCK = struct.Struct("@hhqqi4x")  # struct flock on 64-bit Linux
_PIDS = 2**32  # pid markers start here, far from the role bytes
_PID_SPAN = 2**22  # the kernel's largest pid_max
_BUSY = (errno.EAGAIN, errno.EACCES)


class Role(enum.IntEnum):
    SERVE = 0
    WRITER = 1
    MIGRATE = 2  # migrations; waited for, not refused


_WHAT = {
    Role.SERVE: "it serves it (one serve per database)",
    Role.WRITER: "it writes its projections (one writer per database: an embedded serve, "
    "a Kafka-mode project or a replay)",
}


class DatabaseInUse(Exception):
    """A role is held by another process. The message is one line, for the operator."""

    def __init__(self, database: Path, role: Role, pid: int | None) -> None:
        holder = f"kycflow pid {pid}" if pid is not None else "another kycflow process"
        super().__init__(f"database {database} is in use by {holder}: {_WHAT[role]}")
        self.database, self.role, self.pid = database, role, pid


def lock_path(database: str | Path) -> Path:
    """`/data/kycflow.db` -> `/data/kycflow.db.lock` (symbolic links resolved, so that two
    names of one database share one lock)."""
    path = Path(database).resolve()
    return path.with_name(path.name + ".lock")


def _marker(role: Role) -> int:
    return _PIDS * (role + 1)


class Claim:
    """Roles held on one database until `release()`, or until every process sharing them
    (the claimer and the children it forks) has exited."""

    def __init__(self, database: Path, path: Path, fd: int) -> None:
        self.database, self.path, self._fd = database, path, fd

    def release(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            _leave(fd, self.path)

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *_: object) -> None:
        self.release()


def claim(database: str | Path, *roles: Role, patience: float = 1.0) -> Claim:
    """Hold `roles` on `database`, or raise DatabaseInUse at once when another process holds
    one. (`patience` only covers a holder caught between its two locks, or leaving.)"""
    database, path = Path(database).resolve(), lock_path(database)
    deadline = time.monotonic() + patience
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            busy = _take(fd, roles)
            if _current(fd, path):
                if busy is None:
                    return Claim(database, path, fd)
                pid = _holder(fd, busy)
                if pid is not None or time.monotonic() > deadline:
                    raise DatabaseInUse(database, busy, pid)
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # a file being removed, or a holder between its locks: look again
        time.sleep(0.01)


@contextlib.contextmanager
def migrating(database: str | Path) -> Iterator[None]:
    """Wait for the migration role: processes opening a fresh database together (Kafka
    mode's `serve` and `project`) migrate one after the other."""
    path = lock_path(database)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            _lock(fd, Role.MIGRATE, wait=True)
        except BaseException:
            os.close(fd)
            raise
        if _current(fd, path):
            break
        os.close(fd)
    try:
        yield
    finally:
        _leave(fd, path)


def _take(fd: int, roles: tuple[Role, ...]) -> Role | None:
    """Lock each role's byte, then its pid marker; the first role someone else holds."""
    for role in roles:
        if not _lock(fd, role):
            return role
        _lock(fd, _marker(role) + os.getpid())
    return None


def _leave(fd: int, path: Path) -> None:
    """Release, removing the file if no one else holds a role in it."""
    try:
        if _lock(fd, 0, len(Role)) and _current(fd, path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
    finally:
        os.close(fd)  # releases every lock of this description (unless a child shares it)


def _lock(fd: int, start: int, length: int = 1, *, wait: bool = False) -> bool:
    """An exclusive OFD lock on [start, start + length); False if someone else holds it."""
    command = fcntl.F_OFD_SETLKW if wait else fcntl.F_OFD_SETLK
    try:
        fcntl.fcntl(fd, command, _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, start, length, 0))
    except OSError as exc:
        if exc.errno in _BUSY:
            return False
        raise
    return True


def _holder(fd: int, role: Role) -> int | None:
    """The pid whose marker is locked for `role`, if any."""
    base = _marker(role)
    query = _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, base, _PID_SPAN, 0)
    kind, _, start, _, _ = _FLOCK.unpack(fcntl.fcntl(fd, fcntl.F_OFD_GETLK, query))
    return None if kind == fcntl.F_UNLCK else start - base


def _current(fd: int, path: Path) -> bool:
    """Whether `path` still names the file open as `fd` (not removed, nor replaced)."""
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)


def tidy(database: str | Path) -> None:
    """Leave no -wal and -shm beside a database nobody uses any more.

    The last connection to close folds the WAL into the database and removes both files;
    a read-only connection cannot, and connections a process never closed did not. So
    this opens it read-write once more and closes it: if someone still has it open (a
    service, an analyst's shell), the files stay, as they must. Never creates a database.
    """
    uri = f"file:{Path(database).absolute()}?mode=rw"
    with (
        contextlib.suppress(sqlite3.Error),
        contextlib.closing(sqlite3.connect(uri, uri=True)) as db,
    ):
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
