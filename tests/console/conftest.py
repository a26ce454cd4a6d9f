"""A real `kycflow serve` (embedded mode) with the console, fed real signed webhooks."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest import appending, rawlog
from projections.schema import open_projections
from projections.store import ProjectionStore
from statemachines import Step
from statemachines.events import unrecognised
from tests.e2e.service import CREDENTIALS, KYCFLOW, Service
from tests.payloads import Webhook, deliver, idenfy_identification

TOKEN = "console-test-token"
XSS = "<script>alert(1)</script>"
XSS_ID = 'scan-"><img src=x onerror=alert(1)>'  # a subject id: no "/" in it


def wait_for(service: Service, subject: str, version: int, token: str | None = TOKEN) -> None:
    """Until the subject's projection has reached `version` (bounded)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        status, found = service.get(f"/verifications/{subject}", token)
        if status == 200 and found["version"] >= version:
            return
        time.sleep(0.05)
    raise TimeoutError(f"{subject} did not reach version {version}")


def xss_webhooks() -> list[Webhook]:
    """iDenfy results whose scanRef, client id and event type carry markup."""
    return [
        idenfy_identification(scan_ref=XSS_ID, client_id=XSS),
        idenfy_identification(XSS, scan_ref=XSS_ID),
    ]


def seed(service: Service, token: str | None = TOKEN) -> None:
    service.send(
        idenfy_identification(
            "IDENTIFICATION_PROCESSING_STARTED", scan_ref="scan-1", final=False, overall="PENDING"
        )
    )
    service.send(idenfy_identification(scan_ref="scan-1"))
    for webhook in xss_webhooks():
        service.send(webhook)
    wait_for(service, "idenfy/kyc/scan-1", 2, token)


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    db = Path(tmp_path_factory.mktemp("console")) / "kycflow.db"
    running = Service(db, {**CREDENTIALS, "KYCFLOW_API_TOKEN": TOKEN}).start()
    try:
        seed(running)
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def open_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    db = Path(tmp_path_factory.mktemp("console-open")) / "kycflow.db"
    running = Service(db, dict(CREDENTIALS)).start()
    try:
        seed(running, None)
        yield running
    finally:
        running.stop()


def quarantined_by_an_older_version(db: Path) -> None:
    env = deliver(
        idenfy_identification(scan_ref="scan-fixed"), received_at="2026-11-01T10:00:00.000000Z"
    )
    writer = appending.RawLogWriter(rawlog.raw_log_path(db))
    (receipt,) = writer.append([env])
    writer.close()
    env = env.at(receipt.offset)
    projections = open_projections(str(db))
    store = ProjectionStore(projections)
    step = Step(env, unrecognised(env, "unknown iDenfy event type (before the fix)"), None)
    store.apply([step], receipt.offset)
    projections.close()


@pytest.fixture(params=[TOKEN])
def fixed(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Service]:
    db = tmp_path / "kycflow.db"
    quarantined_by_an_older_version(db)
    token = {"KYCFLOW_API_TOKEN": request.param} if request.param else {}
    running = Service(db, {**CREDENTIALS, **token}).start()
    try:
        yield running
    finally:
        running.stop()


SIMULATED = 70  # verifications: every provider and kind, several of each


def simulate(service: Service, *flags: str) -> None:
    """`kycflow simulate` against the service, as an operator trying kycflow would run it."""
    env = {**os.environ, **service.env, "KYCFLOW_DB": str(service.db)}
    done = subprocess.run(
        [KYCFLOW, "simulate", "--url", service.url, *flags],
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


def wait_applied(service: Service, token: str | None = TOKEN) -> None:
    """Until the processor has applied everything in the raw log (bounded)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        text = service.request("GET", "/metrics", headers=headers)[2].decode()
        gauges = dict(
            line.split(" ", 1) for line in text.splitlines() if line.startswith("kycflow_")
        )
        if float(gauges.get("kycflow_processor_lag_events", "-1")) == 0:
            return
        time.sleep(0.1)
    raise TimeoutError("the processor did not catch up")


def most_eventful(db: Path) -> str:
    """The simulated subject with the longest story: an annotated delivery (a late or
    duplicate event that changed nothing), then the most transitions."""
    uri = f"{db.absolute().as_uri()}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
        row = conn.execute(
            "SELECT subject FROM subject_events GROUP BY subject "
            "ORDER BY MAX(effect != 'transition') DESC, SUM(effect = 'transition') DESC, "
            "subject LIMIT 1"
        ).fetchone()
    return str(row[0])


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """A service fed only by `kycflow simulate`: the traffic the docs' screenshots show."""
    db = Path(tmp_path_factory.mktemp("console-simulated")) / "kycflow.db"
    running = Service(db, {**CREDENTIALS, "KYCFLOW_API_TOKEN": TOKEN}).start()
    try:
        simulate(
            running, "--verifications", str(SIMULATED), "--seed", "11", "--reorder", "--duplicates"
        )
        wait_applied(running)
        yield running
    finally:
        running.stop()
