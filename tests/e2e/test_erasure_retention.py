"""Retention end to end: old raw bodies are reduced by the running service and by
`kycflow retention`, references and the decision trail stay, replay still matches.

Bodies are stored in the clear here (KYCFLOW_ENCRYPTION=off) so that the byte scan sees
them before retention and can tell that they are gone after.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from tests.e2e.test_erasure import (
    ALICE,
    BORIS,
    CARLA,
    kycflow,
    metric,
    replay_matches_live,
    scan,
    start,
    values,
    verification,
)

PEOPLE = (ALICE, BORIS, CARLA)
BODIES = [value for who in PEOPLE for value in values(who, reference=False)]
REFERENCES = [who[5] for who in PEOPLE]


def audit(db: Path) -> list[tuple[str, int]]:
    with sqlite3.connect(db.with_name("kycflow.raw.db")) as raw:
        return raw.execute("SELECT action, deliveries FROM audit ORDER BY id").fetchall()


def test_the_service_reduces_bodies_past_the_policy_and_replay_still_matches(
    tmp_path: Path,
) -> None:
    service = start(
        tmp_path,
        KYCFLOW_ENCRYPTION="off",
        KYCFLOW_RETENTION="last+2s",
        KYCFLOW_RETENTION_INTERVAL="0.5",
    )
    try:
        assert set(scan(tmp_path, BODIES)) == set(BODIES)  # the scan sees them
        deadline = time.monotonic() + 60
        while metric(service, "kycflow_retention_deliveries_reduced_total") < 6:
            assert time.monotonic() < deadline, "retention did not run"
            time.sleep(0.2)
        assert scan(tmp_path, BODIES) == {}
        assert set(scan(tmp_path, REFERENCES)) == set(REFERENCES)  # kept
        for who in PEOPLE:
            row = verification(service, who[0])
            assert row["erased_at"] is None and row["reference"] == who[5]
            assert (row["status"], row["final"]) == ("approved", True)
        assert metric(service, "kycflow_erasures_total") == 0
    finally:
        service.stop()
    # One entry per retention run that reduced something: one run usually takes all six,
    # but subjects whose last events were far enough apart come due in different runs.
    trail = audit(service.db)
    assert trail and {action for action, _ in trail} == {"retention"}
    assert sum(deliveries for _, deliveries in trail) == 6
    assert "Strayname" in scan(tmp_path, ["Strayname"])  # no subject: not retention's
    replay_matches_live(service, tmp_path)


def test_retention_on_demand_counts_first_then_reduces_once(tmp_path: Path) -> None:
    service = start(tmp_path, KYCFLOW_ENCRYPTION="off")
    service.stop()
    time.sleep(1.1)  # the policy below reaches what was just sent
    policy = {"KYCFLOW_RETENTION": "final+1s"}
    counted = kycflow(service.db, "retention", "--dry-run", "--json", **policy)
    assert counted.returncode == 0, counted.stderr
    report = json.loads(counted.stdout)
    assert (report["dry_run"], report["subjects"], report["deliveries"]) == (True, 3, 6)
    assert set(scan(tmp_path, BODIES)) == set(BODIES)  # a dry run changes nothing
    done = kycflow(service.db, "retention", **policy)
    assert done.returncode == 0, done.stderr
    assert "reduced 6 deliveries of 3 subjects" in done.stdout
    assert scan(tmp_path, BODIES) == {}
    again = kycflow(service.db, "retention", "--json", **policy)
    assert json.loads(again.stdout)["deliveries"] == 0
    assert audit(service.db) == [("retention", 6)]
    replay_matches_live(service, tmp_path)


def test_retention_without_a_policy_or_with_a_bad_one_is_one_line_and_exit_2(
    tmp_path: Path,
) -> None:
    db = tmp_path / "kycflow.db"
    for env in ({}, {"KYCFLOW_RETENTION": "forever"}):
        done = kycflow(db, "retention", **env)
        assert done.returncode == 2, done
        assert len(done.stderr.strip().splitlines()) == 1 and "KYCFLOW_RETENTION" in done.stderr
