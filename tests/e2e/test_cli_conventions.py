"""The `kycflow` command behaves as a conventional command line: real processes throughout.

--version; serve's flags over the environment; every --help lists the variables its
command reads, in plain text; argument errors say what was expected; an operator's
mistake is one line and a non-zero exit, never a traceback; a closed pipe is quiet; a
Kafka broker that does not answer is named within seconds.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest

from tests.e2e.service import CREDENTIALS, KYCFLOW, free_port

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = ("serve", "replay", "inspect", "normalise", "simulate")
KAFKA_COMMANDS = ("worker", "project", "tail", "topics")
VARIABLE = re.compile(r"KYCFLOW_[A-Z0-9_]*[A-Z0-9]")


def env_without_kycflow(**settings: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("KYCFLOW_")}
    return {**env, **settings}


def kycflow(*args: str, env: dict[str, str] | None = None, timeout: float = 30) -> Done:
    run = [KYCFLOW, *args]
    env = env if env is not None else env_without_kycflow()
    return subprocess.run(run, env=env, capture_output=True, text=True, timeout=timeout)


Done = subprocess.CompletedProcess[str]


def one_line_failure(done: Done, code: int | None = None) -> str:
    """The single stderr line of a failed command (after checking that it is one)."""
    assert done.returncode != 0 and (code is None or done.returncode == code), done
    assert "Traceback" not in done.stderr and done.stdout == "", done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


# --- version and flags --------------------------------------------------------------------
def test_version_is_the_installed_package_version() -> None:
    done = kycflow("--version")
    assert (done.returncode, done.stdout.strip()) == (0, f"kycflow {metadata.version('kycflow')}")


@pytest.fixture
def flagged(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    """serve with every flag, over an environment that names other values (or bad ones)."""
    port, db = free_port(), tmp_path / "flag.db"
    env = env_without_kycflow(
        **CREDENTIALS,
        KYCFLOW_DB=str(tmp_path / "env.db"),
        KYCFLOW_PORT=str(free_port()),
        KYCFLOW_HOST="0.0.0.0",  # refused without an API token: the flag must win
        KYCFLOW_WORKERS="many",  # malformed: the flag must win
    )
    flags = ["--host", "127.0.0.1", "--port", str(port), "--db", str(db), "--workers", "1"]
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115 — closed below
    process = subprocess.Popen(
        [KYCFLOW, "serve", *flags], env=env, stdout=log, stderr=log, start_new_session=True
    )
    try:
        yield process, port, db
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
        log.close()


def test_serve_flags_win_over_the_environment(
    flagged: tuple[subprocess.Popen[bytes], int, Path],
) -> None:
    process, port, db = flagged
    deadline = time.monotonic() + 20
    while True:  # the HTTP worker answers: everything has started
        assert process.poll() is None, (db.parent / "serve.log").read_text()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as ok:
                assert ok.status == 200
            break
        except OSError:
            assert time.monotonic() < deadline, "serve did not answer on --port"
            time.sleep(0.05)
    assert db.exists() and not (db.parent / "env.db").exists()
    children = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True).stdout
    assert len(children.split()) == 3  # writer, processor and the one HTTP worker of --workers


# --- help ---------------------------------------------------------------------------------
def source_variables(*paths: str) -> set[str]:
    found: set[str] = set()
    for path in paths:
        for file in (ROOT / path).rglob("*.py") if (ROOT / path).is_dir() else [ROOT / path]:
            found |= set(VARIABLE.findall(file.read_text()))
    return found


@pytest.fixture(scope="module")
def helps() -> dict[str, str]:
    return {command: kycflow(command, "--help").stdout for command in COMMANDS + KAFKA_COMMANDS}


def test_every_help_is_plain_text_and_ends_with_the_environment_it_reads(
    helps: dict[str, str],
) -> None:
    for command, text in helps.items():
        assert text.startswith(f"usage: kycflow {command}"), command
        assert "`" not in text, command
        assert "environment:" in text, command
    assert "environment: none read" in helps["normalise"]
    assert "`" not in kycflow("--help").stdout


def test_serve_help_names_every_variable_serve_reads(helps: dict[str, str]) -> None:
    # Whatever ingest, the service and the shared configuration read, serve reads.
    read = source_variables("ingest", "streams/service", "streams/config.py")
    assert read, "no KYCFLOW_* names found: the scan is broken"
    listed = set(VARIABLE.findall(helps["serve"]))
    assert read - listed == set()
    everything = source_variables("ingest", "projections", "streams")
    assert everything - set(VARIABLE.findall(" ".join(helps.values()))) == set()


@pytest.mark.parametrize(
    "args, expected",
    [
        (["simulate", "--verifications", "abc"], "expected a whole number of at least 1"),
        (["simulate", "--url", "ftp://example.com"], "expected a URL such as"),
        (["serve", "--port", "70000"], "expected a whole number from 1 to 65535"),
        (["serve", "--workers", "0"], "expected a whole number from 1 to 256"),
        (["tail", "--idle-timeout", "soon"], "expected a positive number of seconds"),
        (["tail", "--limit", "-3"], "expected a whole number of at least 1"),
    ],
)
def test_argument_errors_say_what_was_expected(args: list[str], expected: str) -> None:
    done = kycflow(*args)
    assert done.returncode == 2 and expected in done.stderr, done.stderr
    assert "invalid" not in done.stderr and "_positive" not in done.stderr


# --- one line, non-zero, no traceback -----------------------------------------------------
def serve_on(db: str, *flags: str) -> Done:
    env = env_without_kycflow(**CREDENTIALS, KYCFLOW_DB=db, KYCFLOW_PORT=str(free_port()))
    return kycflow("serve", *flags, env=env, timeout=20)


def test_serve_names_a_database_path_that_cannot_be_used(tmp_path: Path) -> None:
    afile = tmp_path / "a-file"
    afile.write_text("")
    cases = {
        str(tmp_path): "is a directory",
        str(tmp_path / "missing" / "k.db"): "does not exist",
        str(afile / "k.db"): "is not a directory",
    }
    for db, reason in cases.items():
        line = one_line_failure(serve_on(db), 2)
        assert db in line and reason in line, line
    for db in ("/sys/kycflow-test.db", "/proc/kycflow-test.db"):  # unwritable even for root
        line = one_line_failure(serve_on(db))
        assert db in line, line
    assert not list(tmp_path.glob("**/*.db*"))


def test_serve_names_a_host_that_does_not_resolve(tmp_path: Path) -> None:
    line = one_line_failure(serve_on(str(tmp_path / "k.db"), "--host", "no-such-host.invalid"), 2)
    assert "no-such-host.invalid" in line and "resolve" in line
    assert not list(tmp_path.iterdir())


def test_normalise_names_a_missing_body_file(tmp_path: Path) -> None:
    missing = tmp_path / "body.json"
    line = one_line_failure(kycflow("normalise", "ondato", str(missing)), 1)
    assert str(missing) in line


def test_inspect_names_the_database_it_looked_for_and_does_not_create_it(
    tmp_path: Path,
) -> None:
    env = env_without_kycflow(KYCFLOW_DB="nowhere.db")
    done = subprocess.run(
        [KYCFLOW, "inspect", "idenfy", "kyc", "x"], env=env, cwd=tmp_path, capture_output=True,
        text=True, timeout=30,
    )  # fmt: skip
    line = one_line_failure(done, 1)
    assert str(tmp_path / "nowhere.db") in line
    assert list(tmp_path.iterdir()) == []


def test_a_closed_standard_output_ends_the_command_quietly(tmp_path: Path) -> None:
    body = tmp_path / "body.json"
    body.write_text('{"not": "a webhook"}')
    process = subprocess.Popen(
        [KYCFLOW, "normalise", "ondato", str(body)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # the reader went away, as `| head` does
    err = process.stderr.read()
    process.stderr.close()
    assert (process.wait(timeout=30), err) == (1, b"")


# --- Kafka --------------------------------------------------------------------------------
@pytest.fixture
def silent_broker() -> Iterator[str]:
    """An address that accepts connections and never answers."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        yield f"127.0.0.1:{listener.getsockname()[1]}"


@pytest.mark.parametrize("command", ["topics", "tail"])
def test_a_kafka_broker_that_does_not_answer_is_named_within_ten_seconds(
    command: str, silent_broker: str
) -> None:
    refused = f"127.0.0.1:{free_port()}"
    address = silent_broker if command == "tail" else refused
    started = time.monotonic()
    done = kycflow(command, env=env_without_kycflow(KYCFLOW_KAFKA_BOOTSTRAP=address))
    assert time.monotonic() - started < 10
    line = one_line_failure(done, 1)
    assert address in line and "KYCFLOW_KAFKA_BOOTSTRAP" in line


ERASURE_COMMANDS = {
    "erase": ["erase", "idenfy", "kyc", "x"],
    "retention": ["retention"],
    "audit": ["audit"],
}


@pytest.mark.parametrize("command", sorted(ERASURE_COMMANDS))
def test_the_erasure_commands_name_a_bad_kafka_setting_as_the_other_kafka_commands_do(
    command: str, tmp_path: Path
) -> None:
    db = tmp_path / "k.db"
    db.touch()
    env = env_without_kycflow(
        KYCFLOW_DB=str(db), KYCFLOW_KAFKA_BOOTSTRAP="127.0.0.1:1", KYCFLOW_KAFKA_PARTITIONS="0"
    )
    line = one_line_failure(kycflow(*ERASURE_COMMANDS[command], env=env), 2)
    assert line == one_line_failure(kycflow("worker", env=env), 2)
    assert line.startswith("configuration error:") and "KYCFLOW_KAFKA_PARTITIONS" in line


@pytest.mark.parametrize("command", ["erase", "retention"])
def test_the_erasure_commands_name_a_kafka_broker_that_does_not_answer_before_any_work(
    command: str, tmp_path: Path
) -> None:
    db = tmp_path / "k.db"
    db.touch()
    refused = f"127.0.0.1:{free_port()}"
    env = env_without_kycflow(
        KYCFLOW_DB=str(db),
        KYCFLOW_KAFKA_BOOTSTRAP=refused,
        KYCFLOW_ENCRYPTION="off",
        KYCFLOW_RETENTION="last+1d",
    )
    started = time.monotonic()
    line = one_line_failure(kycflow(*ERASURE_COMMANDS[command], env=env), 1)
    assert time.monotonic() - started < 10
    assert refused in line and "KYCFLOW_KAFKA_BOOTSTRAP" in line
