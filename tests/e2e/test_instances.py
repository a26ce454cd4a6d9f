"""One service per database and per port, with real `kycflow` processes.

A second `serve` on a database or a port already in use, and any other command that would
write the projections a service holds, refuses at once in one line, and the first service
goes on untouched. A stop, a replay or a crash leaves nothing beside the database.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import payloads as p
from tests.e2e.service import CREDENTIALS, KYCFLOW, Service, free_port

FAST = 10.0  # seconds: a refusal comes before anything starts (interpreter start included)


def environment(db: Path, port: int, **settings: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("KYCFLOW_")}
    return {
        **env,
        **CREDENTIALS,
        "KYCFLOW_DB": str(db),
        "KYCFLOW_PORT": str(port),
        "KYCFLOW_WORKERS": "2",
        **settings,
    }


def kycflow(*args: str, env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run a command expected to end on its own (a refused serve would otherwise run on:
    the timeout fails the test)."""
    started = time.monotonic()
    done = subprocess.run([KYCFLOW, *args], env=env, capture_output=True, text=True, timeout=30)
    return done, time.monotonic() - started


def refusal(done: subprocess.CompletedProcess[str], elapsed: float) -> str:
    """The one line a refused command printed (after checking it was refused, fast)."""
    assert done.returncode == 1, (done.returncode, done.stderr)
    assert elapsed < FAST, elapsed
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    return lines[0]


def still_serving(service: Service, scan: str) -> None:
    """The first service answers, stores and projects, into the file on disk."""
    assert service.get("/healthz")[0] == 200
    assert service.send(p.idenfy_identification("IDENTIFICATION_AUTO_FINISHED", scan))[0] == 202
    service.wait_projected()
    with contextlib.closing(sqlite3.connect(f"file:{service.db}?mode=ro", uri=True)) as db:
        subjects = db.execute("SELECT subject FROM verifications").fetchall()
    assert (f"idenfy/kyc/{scan}",) in subjects


def pid_of(service: Service) -> int:
    assert service.process is not None
    return service.process.pid


@pytest.fixture
def tmpdir_env(tmp_path: Path) -> Iterator[Path]:
    """A TMPDIR of the test's own, to see that serve leaves nothing in it either."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    yield scratch


# --- one serve per database ---------------------------------------------------------------
def test_a_second_serve_on_the_same_database_is_refused_naming_it_and_the_holder(
    service: Service,
) -> None:
    done, elapsed = kycflow("serve", env=environment(service.db, free_port()))
    line = refusal(done, elapsed)
    assert str(service.db.resolve()) in line and f"pid {pid_of(service)}" in line
    still_serving(service, "scan-after-second-serve")


def test_kafka_mode_serve_and_project_are_refused_on_a_database_an_embedded_serve_holds(
    service: Service,
) -> None:
    """No broker is needed: the database is checked before Kafka is contacted."""
    nowhere = {"KYCFLOW_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}"}
    for command in ("serve", "project"):
        done, elapsed = kycflow(command, env=environment(service.db, free_port(), **nowhere))
        line = refusal(done, elapsed)
        assert str(service.db.resolve()) in line and f"pid {pid_of(service)}" in line
    still_serving(service, "scan-after-kafka-commands")


def test_replay_in_place_or_into_the_served_file_is_refused_and_the_file_kept(
    service: Service, tmp_path: Path
) -> None:
    still_serving(service, "scan-before-replay")
    inode = service.db.stat().st_ino
    env = environment(service.db, free_port())
    for args in (("replay",), ("replay", "--to", str(service.db))):
        line = refusal(*kycflow(*args, env=env))
        assert str(service.db.resolve()) in line and f"pid {pid_of(service)}" in line
    assert service.db.stat().st_ino == inode  # not replaced under the live service
    still_serving(service, "scan-after-replay")
    assert sorted(path.name for path in tmp_path.glob("kycflow.db.*")) == ["kycflow.db.lock"]


# --- one service per port -----------------------------------------------------------------
def test_a_second_service_on_the_same_port_is_refused_whatever_its_database(
    service: Service, tmp_path: Path
) -> None:
    done, elapsed = kycflow("serve", env=environment(tmp_path / "other.db", service.port))
    line = refusal(done, elapsed)
    assert f"port {service.port} is in use" in line and f"pid {pid_of(service)}" in line
    still_serving(service, "scan-after-second-port")
    assert not list(tmp_path.glob("other.*"))  # refused before creating anything


def test_a_refused_first_run_generates_no_credentials(service: Service, tmp_path: Path) -> None:
    """With nothing configured, a first run generates credentials — but only once the
    database and the port are its own."""
    env = environment(tmp_path / "fresh.db", service.port)
    env = {k: v for k, v in env.items() if k not in CREDENTIALS}
    refusal(*kycflow("serve", env=env))
    assert not list(tmp_path.glob("fresh.*"))


@pytest.mark.parametrize("reuse_port", [False, True], ids=["plain", "SO_REUSEPORT"])
def test_a_port_another_program_listens_on_is_refused(tmp_path: Path, reuse_port: bool) -> None:
    """Even one that set SO_REUSEPORT itself, which kycflow's sockets could join."""
    port = free_port()
    with socket.create_server(("127.0.0.1", port), reuse_port=reuse_port):
        done, elapsed = kycflow("serve", env=environment(tmp_path / "kycflow.db", port))
    assert refusal(done, elapsed) == f"kycflow: port {port} is in use"
    assert list(tmp_path.iterdir()) == []  # refused before creating anything


# --- nothing left behind ------------------------------------------------------------------
def listing(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir() if path.is_file())


def test_a_clean_stop_and_replays_leave_only_the_databases(
    tmp_path: Path, tmpdir_env: Path
) -> None:
    db = tmp_path / "kycflow.db"
    service = Service(db, {**CREDENTIALS, "TMPDIR": str(tmpdir_env)}).start()
    try:
        still_serving(service, "scan-tidy")
        assert "kycflow.db.lock" in listing(tmp_path)
    finally:
        assert service.stop() == 0
    databases = ["kycflow.db", "kycflow.log", "kycflow.master.key", "kycflow.raw.db"]
    assert listing(tmp_path) == databases  # no -wal, -shm, lock or scratch file
    assert list(tmpdir_env.iterdir()) == []  # nor the writer's socket directory

    env = environment(db, free_port())
    assert kycflow("replay", env=env)[0].returncode == 0
    assert listing(tmp_path) == databases
    assert kycflow("replay", "--to", str(tmp_path / "copy.db"), env=env)[0].returncode == 0
    assert listing(tmp_path) == ["copy.db", *databases]


def test_a_killed_supervisor_takes_its_processes_along_and_frees_database_and_port(
    tmp_path: Path,
) -> None:
    db = tmp_path / "kycflow.db"
    service = Service(db, dict(CREDENTIALS)).start()
    supervisor = pid_of(service)
    pgrep = subprocess.run(["pgrep", "-P", str(supervisor)], capture_output=True, text=True)
    children = [int(pid) for pid in pgrep.stdout.split()]
    assert len(children) >= 3
    os.kill(supervisor, signal.SIGKILL)
    try:
        deadline = time.monotonic() + 15
        while any(_alive(pid) for pid in children):
            assert time.monotonic() < deadline, "the children outlived their supervisor"
            time.sleep(0.05)
        again = Service(db, dict(CREDENTIALS), port=service.port).start()
        still_serving(again, "scan-after-crash")
        again.stop()
    finally:
        service.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (ProcessLookupError, FileNotFoundError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited


def test_inspect_after_a_stop_leaves_only_the_databases(tmp_path: Path) -> None:
    service = Service(tmp_path / "kycflow.db", dict(CREDENTIALS)).start()
    assert service.send(p.idenfy_identification("IDENTIFICATION_AUTO_FINISHED", "scan-i"))[0] == 202
    service.wait_projected()
    service.stop()
    done, _ = kycflow("inspect", "idenfy", "kyc", "scan-i", env=environment(service.db, 1))
    assert done.returncode == 0, done.stderr
    assert sorted(f.name for f in tmp_path.glob("kycflow.*db*")) == [
        "kycflow.db",
        "kycflow.raw.db",
    ]
