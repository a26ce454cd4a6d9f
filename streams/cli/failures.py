"""What the command line checks before it starts work, and how failures become one line.

An operator's mistake (a database path that is a directory, a host that does not
resolve, a file that is not there) is named with the path or value it concerns, in one
line, before anything is written. Whatever still fails later (a read-only file system
that `os.access` does not see, for root) is turned into one line by `describe`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path


def database_problem(path: str, *, create: bool) -> str | None:
    """Why `path` cannot be used as a projections database; None when it can.

    `create`: the command writes it (and may create it); else it only reads an existing one
    and must not create it.
    """
    target = Path(path).absolute()
    if target.is_dir():
        return f"the database path {target} is a directory, not a file"
    if target.exists():
        mode = os.R_OK | (os.W_OK if create else 0)
        if not target.is_file():
            return f"the database path {target} is not a regular file"
        if not os.access(target, mode):
            return (
                f"cannot {'write' if create else 'read'} the database {target}: permission denied"
            )
        return None
    if not create:
        return f"no database at {target} (set KYCFLOW_DB or --db to the serving database)"
    parent = target.parent
    if not parent.is_dir():
        what = "is not a directory" if parent.exists() else "does not exist"
        return f"cannot create the database {target}: {parent} {what}"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"cannot create the database {target}: {parent} is not writable"
    return None


def host_problem(host: str, port: int) -> str | None:
    """Why the service cannot listen on host:port as named; None when the name resolves."""
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, socket.gaierror) else "not a valid host name"
        return f"cannot listen on {host!r}: it does not resolve ({reason})"
    return None


def describe(exc: OSError | sqlite3.Error, path: str | None = None) -> str:
    """One line for an I/O failure: what failed, on which path."""
    if isinstance(exc, sqlite3.Error):
        where = f" {Path(path).absolute()}" if path else ""
        return f"cannot use the database{where}: {exc}"
    name = exc.filename if exc.filename is not None else path
    reason = exc.strerror or str(exc) or type(exc).__name__
    return f"{reason}: {name}" if name else reason


def quiet_broken_pipe() -> None:
    """The reader of standard output went away (`| head`): say nothing more, and keep the
    interpreter's final flush from printing a traceback-like warning."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


@contextlib.contextmanager
def quiet(logger_name: str) -> Iterator[None]:
    """A library's own logging off while it runs (kafka-python logs every retry and timeout
    on stderr): the one line a failure becomes is the command's."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)
