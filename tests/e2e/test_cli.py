"""The `kycflow` command line end to end: real processes, real HTTP, real SQLite files.

What an operator relies on: a first run works with no setup and keeps its secrets private;
unsafe or malformed configurations refuse to start, saying why; the read API honours its
token; a stop is clean; replay and inspect explain the past; every command documents itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import json
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from projections import queries
from tests import payloads as p
from tests.e2e.service import CREDENTIALS, KYCFLOW, Service, free_port

STAMP = "%Y-%m-%dT%H:%M:%S.%fZ"  # how the raw log writes received_at
COMMANDS = ("serve", "replay", "inspect", "normalise", "simulate")


def bare_env(db: Path, **settings: str) -> dict[str, str]:
    """The test's environment without any KYCFLOW_* variable, plus `settings`."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("KYCFLOW_")}
    return {**env, "KYCFLOW_DB": str(db), **settings}


def kycflow(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    run = [KYCFLOW, *args]
    return subprocess.run(run, env=env, capture_output=True, text=True, timeout=timeout)


def rows(path: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        return db.execute(sql, params).fetchall()


def status_in(path: Path, subject: str) -> str:
    return rows(path, "SELECT status FROM verifications WHERE subject = ?", subject)[0][0]


def alive(pid: int) -> bool:
    """Still running: exists, and is no zombie (state after the name in /proc/PID/stat)."""
    with contextlib.suppress(OSError):
        os.kill(pid, 0)
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return False


@pytest.fixture
def no_kycflow_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Services started by the test inherit no KYCFLOW_* variable from the test runner."""
    for key in [key for key in os.environ if key.startswith("KYCFLOW_")]:
        monkeypatch.delenv(key)


def preliminary(scan: str) -> p.Webhook:
    auto = "IDENTIFICATION_AUTO_FINISHED"
    return p.idenfy_identification(auto, scan, final=False, overall="SUSPECTED")


def decision(scan: str, overall: str) -> p.Webhook:
    manual = "IDENTIFICATION_MANUAL_FINISHED"
    return p.idenfy_identification(manual, scan, overall=overall, manual=True)


# --- 1. First run -------------------------------------------------------------------------
def test_first_run_writes_private_credentials_that_simulate_uses_for_every_provider(
    tmp_path: Path, no_kycflow_env: None
) -> None:
    db = tmp_path / "kycflow.db"
    credentials = tmp_path / "kycflow.credentials.json"
    service = Service(db, {}).start()
    try:
        assert credentials.stat().st_mode & 0o777 == 0o600
        content = credentials.read_bytes()
        written = json.loads(content)
        assert isinstance(written, dict) and written
        assert all(key.startswith("KYCFLOW_") for key in written)
        log = db.with_suffix(".log").read_text()
        assert str(credentials) in "".join(log.split()), log  # however the console wraps it
        secrets = [v for k, v in written.items() if k != "KYCFLOW_ONDATO_USERNAME"]

        done = kycflow(  # host:port, no scheme: http is meant
            *("simulate", "--url", f"127.0.0.1:{service.port}", "--verifications", "30"),
            *("--reorder", "--duplicates", "--seed", "1"),
            env=bare_env(db),
        )
        assert done.returncode == 0, done.stderr
        assert f"credentials: {credentials} " in done.stderr  # which file it read
        total = next(line for line in done.stdout.splitlines() if "total" in line)
        _, sent, accepted, _, rejected, errors = [c.strip() for c in total.split("│")[1:-1]]
        assert (accepted, rejected, errors) == (sent, "0", "0"), done.stdout
        assert not [s for s in secrets if s in done.stdout + done.stderr]

        service.wait_projected()
        assert rows(db, "SELECT count(*) FROM quarantine") == [(0,)]
        raw = db.with_name("kycflow.raw.db")
        assert rows(raw, "SELECT count(*) FROM raw_log") == [(int(sent),)]
        status, listing = service.get("/verifications?limit=500")
        assert status == 200
        assert {item["provider"] for item in listing["items"]} == {"idenfy", "ondato", "idwise"}
    finally:
        service.stop()

    Service(db, {}).start().stop()  # a second start keeps the credentials
    assert credentials.read_bytes() == content
    log = db.with_suffix(".log").read_text()
    assert not [secret for secret in secrets if secret in log]


def test_first_run_log_names_the_credentials_file_verbatim(
    tmp_path: Path, no_kycflow_env: None
) -> None:
    db = tmp_path / "a-deployment-directory-whose-name-is-rather-long-but-valid" / "kycflow.db"
    db.parent.mkdir()
    Service(db, {}).start().stop()
    assert str(db.with_suffix(".credentials.json")) in db.with_suffix(".log").read_text()


def test_credentials_file_does_not_hide_a_credential_set_in_the_environment(
    tmp_path: Path, no_kycflow_env: None
) -> None:
    db = tmp_path / "kycflow.db"
    Service(db, {}).start().stop()
    written = json.loads(db.with_suffix(".credentials.json").read_text())
    service = Service(db, {"KYCFLOW_IDWISE_TOKEN": "override"}).start()
    try:
        _, headers, body = p.idwise("Finished User Steps", event_id="e1", journey="j-override")
        for token, expected in (("override", 202), (written["KYCFLOW_IDWISE_TOKEN"], 401)):
            auth = {**headers, "Authorization": f"Bearer {token}"}
            assert service.request("POST", "/webhooks/idwise", body, auth)[0] == expected
        _, headers, body = preliminary("scan-from-file")  # the file still serves iDenfy
        key = written["KYCFLOW_IDENFY_SIGNING_KEY"].encode()
        headers["Idenfy-Signature"] = hmac.new(key, body, hashlib.sha256).hexdigest()
        assert service.request("POST", "/webhooks/idenfy", body, headers)[0] == 202
    finally:
        service.stop()


# --- 2. Refusals --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "variable, value, named",
    [
        ("KYCFLOW_HOST", "0.0.0.0", "KYCFLOW_API_TOKEN"),  # beyond loopback, no token
        ("KYCFLOW_ONDATO_ALLOWED_IPS", "not-an-ip", "KYCFLOW_ONDATO_ALLOWED_IPS"),
        ("KYCFLOW_MAX_BODY", "lots", "KYCFLOW_MAX_BODY"),
        pytest.param("KYCFLOW_PORT", "http", "KYCFLOW_PORT"),
        pytest.param("KYCFLOW_WORKERS", "many", "KYCFLOW_WORKERS"),
    ],
)
def test_serve_refuses_an_unsafe_or_malformed_setting_and_says_which(
    tmp_path: Path, variable: str, value: str, named: str
) -> None:
    env = bare_env(tmp_path / "k.db", **CREDENTIALS, KYCFLOW_PORT=str(free_port()))
    started = time.monotonic()
    done = kycflow("serve", env={**env, variable: value}, timeout=10)
    assert (done.returncode, done.stdout) == (2, "")
    assert time.monotonic() - started < 5
    assert named in done.stderr and "Traceback" not in done.stderr


# --- 3. The read API's token --------------------------------------------------------------
def test_api_token_guards_every_read_route_but_the_health_check(tmp_path: Path) -> None:
    service = Service(tmp_path / "k.db", {**CREDENTIALS, "KYCFLOW_API_TOKEN": "secret-token"})
    service.start()
    try:
        assert service.send(preliminary("scan-token"))[0] == 202
        known, unknown = "/verifications/idenfy/kyc/scan-token", "/verifications/idenfy/kyc/nope"
        deadline = time.monotonic() + 10
        while service.get(known, "secret-token")[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert service.get(known, "secret-token")[1]["status"] == "in_review"
        assert service.get(unknown, "secret-token")[0] == 404
        assert service.get(known + "/history", "secret-token")[0] == 200
        for path in (known, unknown, known + "/history", "/verifications", "/metrics", "/feed"):
            assert service.get(path)[0] == 401, path
            assert service.get(path, "wrong-token")[0] == 401, path
        assert service.get("/healthz")[0] == 200
    finally:
        service.stop()


# --- 4. Graceful stop ---------------------------------------------------------------------
def test_sigterm_stops_serve_cleanly_with_no_process_left_behind(service: Service) -> None:
    assert service.process is not None
    assert service.send(preliminary("scan-stop"))[0] == 202
    service.wait_projected()
    pgrep = ["pgrep", "-P", str(service.process.pid)]
    children = [int(pid) for pid in subprocess.run(pgrep, capture_output=True).stdout.split()]
    assert len(children) >= 3  # writer, processor, HTTP workers
    feed = http.client.HTTPConnection("127.0.0.1", service.port, timeout=10)
    try:
        feed.request("GET", "/feed")  # an open stream must not hold the stop
        assert feed.getresponse().status == 200
        started = time.monotonic()
        os.kill(service.process.pid, signal.SIGTERM)
        assert service.process.wait(timeout=15) == 0
        assert time.monotonic() - started < 15
    finally:
        feed.close()
        service.stop()
    assert [pid for pid in children if alive(pid)] == []


# --- 5. Replay up to a time ---------------------------------------------------------------
@pytest.fixture(scope="module")
def decided_later(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """A stopped service's DB where scan-late was in review, then rejected 1.1 s later."""
    db = tmp_path_factory.mktemp("replay") / "kycflow.db"
    service = Service(db, dict(CREDENTIALS)).start()
    try:
        first = service.send(preliminary("scan-late"))[1]["offset"]
        time.sleep(1.1)
        second = service.send(decision("scan-late", "DENIED"))[1]["offset"]
        service.wait_projected()
    finally:
        service.stop()
    raw = db.with_name("kycflow.raw.db")
    received = dict(rows(raw, 'SELECT "offset", received_at FROM raw_log'))
    return db, received[first], received[second]


def when(stamp: str) -> datetime:
    return datetime.strptime(stamp, STAMP).replace(tzinfo=UTC)


def test_replay_until_a_time_rebuilds_the_status_as_it_was_then(
    decided_later: tuple[Path, str, str], tmp_path: Path
) -> None:
    db, first, second = decided_later
    until = (when(first) + timedelta(seconds=0.5)).strftime(STAMP)
    assert when(first) < when(until) < when(second)
    then, now = tmp_path / "then.db", tmp_path / "now.db"
    done = kycflow("replay", "--until", until, "--to", str(then), env=bare_env(db))
    assert done.returncode == 0, done.stderr
    assert status_in(then, "idenfy/kyc/scan-late") == "in_review"
    done = kycflow("replay", "--to", str(now), env=bare_env(db))
    assert done.returncode == 0, done.stderr
    assert status_in(now, "idenfy/kyc/scan-late") == "rejected"
    assert status_in(db, "idenfy/kyc/scan-late") == "rejected"


def test_replay_until_a_whole_second_excludes_events_received_after_it(
    decided_later: tuple[Path, str, str], tmp_path: Path
) -> None:
    db, first, second = decided_later
    until = when(second).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert when(first) < datetime.fromisoformat(until) < when(second)
    then = tmp_path / "then.db"
    done = kycflow("replay", "--until", until, "--to", str(then), env=bare_env(db))
    assert done.returncode == 0, done.stderr
    assert status_in(then, "idenfy/kyc/scan-late") == "in_review"


def test_replay_without_a_raw_log_fails_with_a_clear_message(tmp_path: Path) -> None:
    done = kycflow("replay", env=bare_env(tmp_path / "empty.db"))
    assert done.returncode != 0
    assert "raw log" in done.stderr and "empty.db" in done.stderr
    assert "Traceback" not in done.stderr


# --- 6. Inspect ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def inspected(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The env of a running service that got scan-why's preliminary result, decision, copy."""
    service = Service(tmp_path_factory.mktemp("inspect") / "kycflow.db", dict(CREDENTIALS))
    service.start()
    try:
        for webhook in (preliminary("scan-why"), decision("scan-why", "APPROVED")):
            assert service.send(webhook)[0] == 202
        assert service.send(decision("scan-why", "APPROVED"))[1]["duplicate"] is True
        service.wait_projected()
        env = bare_env(service.db)
        env.pop("COLUMNS", None)
        yield env
    finally:
        service.stop()


def test_inspect_json_gives_the_projection_and_the_effect_of_every_delivery(
    inspected: dict[str, str],
) -> None:
    done = kycflow("inspect", "idenfy", "kyc", "scan-why", "--json", env=inspected)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    projection = found["projection"]
    assert (projection["status"], projection["decided_by"]) == ("approved", "manual")
    # The HTTP API's types and fields: final a boolean, reasons a list, no internal columns.
    with contextlib.closing(sqlite3.connect(inspected["KYCFLOW_DB"])) as db:
        assert projection == queries.verification(db, "idenfy", "kyc", "scan-why")
    assert projection["final"] is True and isinstance(projection["reasons"], list)
    effects = [step["effect"] for step in found["timeline"]]
    assert len(effects) == 3 and effects[0] == "transition" and effects[-1] == "duplicate"
    assert all(step["reason"] for step in found["timeline"])


@pytest.mark.parametrize("columns", ["200", None], ids=["wide terminal", "piped"])
def test_inspect_prints_the_subject_and_each_effect_for_a_human(
    inspected: dict[str, str], columns: str | None
) -> None:
    env = inspected if columns is None else {**inspected, "COLUMNS": columns}
    done = kycflow("inspect", "idenfy", "kyc", "scan-why", env=env)
    assert done.returncode == 0, done.stderr
    assert "idenfy/kyc/scan-why" in done.stdout
    assert "transition:" in done.stdout and "duplicate:" in done.stdout


def test_inspect_into_a_closed_pipe_exits_quietly(inspected: dict[str, str]) -> None:
    command = [KYCFLOW, "inspect", "idenfy", "kyc", "scan-why"]
    process = subprocess.Popen(
        command, env=inspected, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # as `| head` does once it has read enough
    err = process.stderr.read()
    process.stderr.close()
    assert (process.wait(timeout=30), err) == (1, b"")


def test_inspect_of_an_unknown_subject_exits_1_saying_so(inspected: dict[str, str]) -> None:
    done = kycflow("inspect", "idenfy", "kyc", "scan-nobody", env=inspected)
    assert done.returncode == 1
    assert "no such subject" in done.stderr and "scan-nobody" in done.stderr
    assert "Traceback" not in done.stderr


# --- 7. Help ------------------------------------------------------------------------------
def test_help_lists_every_command() -> None:
    done = kycflow("--help", env=dict(os.environ))
    assert done.returncode == 0
    assert all(command in done.stdout for command in COMMANDS)


@pytest.mark.parametrize(
    "command, summary",
    [
        ("serve", "embedded mode"),
        ("replay", "rebuild the projections"),
        ("inspect", "why a verification is in its state"),
        ("normalise", "canonical event"),
        ("simulate", "without a provider account"),
    ],
)
def test_each_command_help_describes_the_command(command: str, summary: str) -> None:
    done = kycflow(command, "--help", env=dict(os.environ))
    assert done.returncode == 0
    assert done.stdout.startswith(f"usage: kycflow {command}")
    assert summary in " ".join(done.stdout.split())
