"""Erasure end to end (issue 12): a real `kycflow serve`, real signed webhooks carrying
personal data, `kycflow erase` as a process and `DELETE /verifications/…` over HTTP; then
the bytes of every file in the data directory are scanned for the erased person's values.

The scan must be able to fail: another person's values are still found where they are
kept — in the clear when encryption is off, and the reference in the projections always.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import payloads as p
from tests.e2e.service import CREDENTIALS, KYCFLOW, Service
from tests.e2e.test_embedded import table_dump

TOKEN = "erasure-test-token"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


def person(scan: str, first: str, last: str, number: str, dob: str, ref: str) -> list[p.Webhook]:
    """Two iDenfy results of one scan (a preliminary then a manual final one) carrying
    this person's name, document number and date of birth."""
    sent = []
    for event, final in (
        ("IDENTIFICATION_AUTO_FINISHED", False),
        ("IDENTIFICATION_MANUAL_FINISHED", True),
    ):
        provider, headers, body = p.idenfy_identification(event, scan, final=final, client_id=ref)
        doc = json.loads(body)
        doc["data"].update(docFirstName=first, docLastName=last, docNumber=number, docDob=dob)
        sent.append((provider, headers, json.dumps(doc).encode()))
    return sent


ALICE = ("scan-alice", "Alicja", "Wrzosowska", "ZX9184736", "1971-02-03", "cust-alice-77")
BORIS = ("scan-boris", "Borislav", "Kettleborough", "QK5550123", "1982-11-29", "cust-boris-88")
CARLA = ("scan-carla", "Carlotta", "Fitzwilliams", "MN7301946", "1965-07-14", "cust-carla-99")
# A delivery no normaliser reads, naming Alice by her scan: dropped with her erasure.
STRAY_BODY = {"about": "scan-alice", "note": "Strayname Quarantinova"}
STRAY = ("ondato", {"Content-Type": "application/json"}, json.dumps(STRAY_BODY).encode())


def values(who: tuple[str, ...], *, reference: bool = True) -> list[str]:
    return list(who[1:5]) + ([who[5]] if reference else [])


def scan(directory: Path, wanted: list[str]) -> dict[str, list[str]]:
    """Which files of the data directory hold each value, byte for byte."""
    found: dict[str, list[str]] = {}
    for file in sorted(directory.iterdir()):
        if file.is_file():
            data = file.read_bytes()
            for value in wanted:
                if value.encode() in data:
                    found.setdefault(value, []).append(file.name)
    return found


def kycflow(db: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KYCFLOW_")}
    return subprocess.run(
        [KYCFLOW, *args], env={**clean, "KYCFLOW_DB": str(db), **env},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def metric(service: Service, name: str) -> float:
    status, _, text = service.request("GET", "/metrics", headers=BEARER)
    assert status == 200
    [line] = [line for line in text.decode().splitlines() if line.startswith(name + " ")]
    return float(line.split()[1])


def wait_projected(service: Service, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while metric(service, "kycflow_processor_lag_events") != 0:
        assert time.monotonic() < deadline, "the processor did not catch up"
        time.sleep(0.05)


def start(tmp_path: Path, **env: str) -> Service:
    service = Service(tmp_path / "kycflow.db", {**CREDENTIALS, "KYCFLOW_API_TOKEN": TOKEN, **env})
    service.start()
    try:
        for webhook in [w for who in (ALICE, BORIS, CARLA) for w in person(*who)] + [STRAY]:
            assert service.send(webhook)[0] == 202
        wait_projected(service)
    except BaseException:
        service.stop()
        raise
    return service


@pytest.fixture(params=["encrypted", "in the clear"])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Service]:
    clear = {"KYCFLOW_ENCRYPTION": "off"} if request.param == "in the clear" else {}
    service = start(tmp_path, **clear)
    yield service
    if service.process is not None:
        service.stop()


def verification(service: Service, scan_ref: str) -> dict[str, Any]:
    status, row = service.get(f"/verifications/idenfy/kyc/{scan_ref}", TOKEN)
    assert status == 200, row
    return dict(row)


def replay_matches_live(service: Service, tmp_path: Path) -> None:
    """`kycflow replay --to` rebuilds the live tables, feed positions included (an erasure
    of everything leaves gaps in them live; its record tells replay where)."""
    if service.process is not None:
        service.stop()
    rebuilt = tmp_path / "rebuilt.db"
    done = kycflow(service.db, "replay", "--to", str(rebuilt))
    assert done.returncode == 0, done.stderr
    live, replayed = table_dump(service.db), table_dump(rebuilt)
    assert replayed == live


def only_others_remain(directory: Path, gone: list[str], kept: list[str], clear: bool) -> None:
    """None of `gone` in any file; all of `kept` when bodies are in the clear, else (sealed
    bodies are noise) its reference, which the projections hold."""
    found = scan(directory, gone + kept)
    assert not set(gone) & set(found), found
    assert set(kept if clear else kept[-1:]) <= set(found), found


def in_the_clear(service: Service) -> bool:
    return service.env.get("KYCFLOW_ENCRYPTION") == "off"


def test_erase_on_the_command_line_leaves_no_byte_of_the_person(
    served: Service, tmp_path: Path
) -> None:
    clear = in_the_clear(served)
    only_others_remain(tmp_path, [], values(ALICE) + values(BORIS), clear)  # the scan sees
    done = kycflow(served.db, "erase", "idenfy", "kyc", ALICE[0], "--json")
    assert done.returncode == 0, done.stderr
    [erased] = json.loads(done.stdout)
    assert (erased["subject"], erased["deliveries"], erased["dropped"]) == (
        f"idenfy/kyc/{ALICE[0]}", 2, 1,
    )  # fmt: skip
    row = verification(served, ALICE[0])
    assert row["erased_at"] == erased["erased_at"] and row["reference"] is None
    assert (row["status"], row["final"], row["decided_by"]) == ("approved", True, "manual")
    assert verification(served, BORIS[0])["reference"] == BORIS[5]
    gone = [*values(ALICE), "Strayname"]
    only_others_remain(tmp_path, gone, values(BORIS), clear)  # while it runs
    served.stop()
    only_others_remain(tmp_path, gone, values(BORIS), clear)
    replay_matches_live(served, tmp_path)


def test_erase_over_the_api_needs_the_token_and_names_the_subject(
    served: Service, tmp_path: Path
) -> None:
    path = f"/verifications/idenfy/kyc/{CARLA[0]}"
    assert served.request("DELETE", path)[0] == 401
    bearer = BEARER
    assert served.request("DELETE", path + "?scope=some", headers=bearer)[0] == 400
    assert served.request("DELETE", "/verifications/idenfy/kyc/nobody", headers=bearer)[0] == 404
    status, _, body = served.request("DELETE", path + "?keep_reference=true", headers=bearer)
    assert status == 200, body
    erased = json.loads(body)
    assert (erased["deliveries"], erased["keys"] >= 0) == (2, True)
    row = verification(served, CARLA[0])
    assert row["erased_at"] == erased["erased_at"] and row["reference"] == CARLA[5]
    clear = in_the_clear(served)
    only_others_remain(tmp_path, values(CARLA, reference=False), values(BORIS), clear)
    assert CARLA[5] in scan(tmp_path, [CARLA[5]]), "kept, as asked"
    # Erasing twice is harmless; the audit trail names the token by fingerprint only.
    assert served.request("DELETE", path, headers=bearer)[0] == 200
    served.stop()
    audit = _audit(served.db)
    assert [a[0] for a in audit] == ["erase", "erase"] and all(
        a[1].startswith("api:") and TOKEN not in a[1] for a in audit
    )
    assert scan(tmp_path, [TOKEN]) == {}
    replay_matches_live(served, tmp_path)


def test_an_erasure_that_finds_the_raw_log_locked_is_503_and_asking_again_erases(
    tmp_path: Path,
) -> None:
    """Another writer holding the raw log past the erasure's patience: a 503 saying to ask
    again (it was a 500), nothing half done, and asking again erases."""
    import sqlite3
    from contextlib import closing

    service = start(tmp_path)
    try:
        path = f"/verifications/idenfy/kyc/{ALICE[0]}"
        raw = service.db.with_name("kycflow.raw.db")
        with closing(sqlite3.connect(raw, isolation_level=None)) as holder:
            holder.execute("BEGIN IMMEDIATE")
            status, headers, body = service.request("DELETE", path, headers=BEARER)
            holder.execute("ROLLBACK")
        assert (status, headers.get("Retry-After")) == (503, "5"), body
        assert json.loads(body)["subject"] == f"idenfy/kyc/{ALICE[0]}"
        assert verification(service, ALICE[0])["erased_at"] is None
        assert service.request("DELETE", path, headers=BEARER)[0] == 200
        assert verification(service, ALICE[0])["erased_at"]
    finally:
        service.stop()
    assert [a[0] for a in _audit(service.db)] == ["erase"]  # the refused one left none


def _audit(db: Path) -> list[tuple[str, str, str]]:
    import sqlite3

    with sqlite3.connect(db.with_name("kycflow.raw.db")) as raw:
        return raw.execute("SELECT action, by, subjects FROM audit ORDER BY id").fetchall()


def test_erase_by_reference_and_with_all_when_no_service_runs(tmp_path: Path) -> None:
    service = start(tmp_path)
    service.stop()
    done = kycflow(service.db, "erase", "--reference", BORIS[5], "--all")
    assert done.returncode == 0, done.stderr
    assert f"erased idenfy/kyc/{BORIS[0]}" in done.stdout
    only_others_remain(tmp_path, values(BORIS), values(ALICE), clear=False)
    assert not list(tmp_path.glob("*-wal")) and not list(tmp_path.glob("*.lock"))
    service.start()
    row = verification(service, BORIS[0])
    assert row["erased_at"] and row["status"] is None  # --all: the trail goes too
    replay_matches_live(service, tmp_path)


def test_an_unknown_subject_is_one_line_and_exit_1(served: Service) -> None:
    for args in (("idenfy", "kyc", "nobody"), ("--reference", "nobody")):
        done = kycflow(served.db, "erase", *args)
        assert done.returncode == 1, done
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
        assert "nobody" in done.stderr and done.stdout == ""


def test_a_wrong_master_key_is_one_line_and_exit_2(tmp_path: Path) -> None:
    service = start(tmp_path)
    other = "A" * 43 + "="  # 32 bytes of base64, not the first-run key
    done = kycflow(service.db, "erase", "idenfy", "kyc", ALICE[0], KYCFLOW_MASTER_KEY=other)
    assert done.returncode == 2, done
    line = done.stderr.strip()
    assert len(line.splitlines()) == 1 and "master key" in line and "Traceback" not in line
    service.stop()
    assert ALICE[5] in scan(tmp_path, [ALICE[5]])  # nothing was erased
