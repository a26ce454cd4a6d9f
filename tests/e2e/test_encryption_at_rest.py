"""Encryption at rest through the real service: no body value reaches a file in the clear,
and a wrong or missing master key stops `kycflow serve` with one line (real processes)."""

from __future__ import annotations

import base64
import os
import sqlite3
import subprocess
from pathlib import Path

from ingest import sealing
from streams.simulator import samples
from tests.e2e.service import CREDENTIALS, KYCFLOW, Service, free_port

# Personal values the sample bodies carry, and one value that is not personal (a control:
# the scan finds what is stored in the clear).
PERSONAL = (b"JOHN", b"AB123456", b"1990-01-01", b"Vilnius", b"front.png")


def data_files(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in directory.iterdir() if ".db" in p.name)


def send_identifications(service: Service, count: int) -> None:
    for n in range(count):
        webhook = samples.idenfy_identification(scan_ref=f"scan-{n}", client_id=f"client-{n}")
        assert service.send(webhook)[0] == 202


def key_text() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def refusal(db: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KYCFLOW_")}
    env = {**clean, **CREDENTIALS, **env, "KYCFLOW_DB": str(db), "KYCFLOW_PORT": str(free_port())}
    return subprocess.run(
        [KYCFLOW, "serve"], env=env, capture_output=True, text=True, timeout=30, check=False
    )


def test_no_body_value_is_stored_in_the_clear(service: Service) -> None:
    send_identifications(service, 20)
    service.wait_projected()
    assert service.get("/verifications?provider=idenfy")[1]["items"]  # it was all read
    service.stop()
    stored = data_files(service.db.parent)
    assert b"scan-7" in stored  # the provider's ids stay in the clear (the decision trail)
    for value in PERSONAL:
        assert value not in stored, value
    key_file = service.db.with_suffix(".master.key")
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert key_file.read_text().strip() not in service.db.with_suffix(".log").read_text()


def test_a_wrong_or_missing_master_key_stops_serve_with_one_line(service: Service) -> None:
    send_identifications(service, 3)
    service.stop()
    raw = service.db.with_suffix(".raw.db")
    with sqlite3.connect(raw) as conn:
        before = conn.execute("SELECT count(*) FROM raw_log").fetchone()
    fingerprint = sealing.fingerprint(
        base64.b64decode(service.db.with_suffix(".master.key").read_text())
    )

    wrong = refusal(service.db, {"KYCFLOW_MASTER_KEY": key_text()})
    assert wrong.returncode == 2, wrong.stderr
    lines = wrong.stderr.strip().splitlines()
    assert len(lines) == 1 and fingerprint in lines[0] and "Traceback" not in wrong.stderr

    service.db.with_suffix(".master.key").rename(service.db.with_suffix(".key.bak"))
    missing = refusal(service.db, {})
    assert missing.returncode == 2 and "does not exist" in missing.stderr, missing.stderr
    assert not service.db.with_suffix(".master.key").exists()  # no new key over a sealed log
    with sqlite3.connect(raw) as conn:
        assert conn.execute("SELECT count(*) FROM raw_log").fetchone() == before


def test_a_rotated_master_key_reads_old_rows_and_wraps_new_ones(service: Service) -> None:
    send_identifications(service, 2)
    service.stop()
    old = service.db.with_suffix(".master.key").read_text().strip()
    new = key_text()
    rotated = Service(service.db, {**CREDENTIALS, "KYCFLOW_MASTER_KEY": f"{new},{old}"})
    rotated.start()
    try:
        webhook = samples.idenfy_identification(scan_ref="scan-new", client_id="client-new")
        assert rotated.send(webhook)[0] == 202
        rotated.wait_projected()
        status, found = rotated.get("/verifications?provider=idenfy")
        assert status == 200 and len(found["items"]) == 3
    finally:
        rotated.stop()
    with sqlite3.connect(service.db.with_suffix(".raw.db")) as conn:
        masters = [row[0] for row in conn.execute("SELECT master FROM data_keys ORDER BY key_id")]
    fingerprints = [sealing.fingerprint(base64.b64decode(k)) for k in (old, new)]
    assert masters == [fingerprints[0], fingerprints[0], fingerprints[1]]
