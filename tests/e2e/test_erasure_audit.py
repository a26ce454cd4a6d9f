"""`kycflow audit` end to end in embedded mode: a real service, an erasure on the command
line and one over the API, a retention run, then the trail as the command prints it —
while the service runs, with no personal value in it."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

from tests.e2e.test_cli_conventions import env_without_kycflow, one_line_failure
from tests.e2e.test_cli_conventions import kycflow as run
from tests.e2e.test_erasure import (
    ALICE,
    BEARER,
    BORIS,
    CARLA,
    TOKEN,
    kycflow,
    start,
    values,
)

EVERY_VALUE = [v for who in (ALICE, BORIS, CARLA) for v in values(who)] + ["Strayname", TOKEN]


def trail(db: Path, *args: str) -> list[dict[str, object]]:
    done = kycflow(db, "audit", "--json", *args)
    assert done.returncode == 0, done.stderr
    entries: list[dict[str, object]] = json.loads(done.stdout)
    assert not any(value in done.stdout for value in EVERY_VALUE), done.stdout
    return entries


def test_the_trail_shows_erasures_and_retention_runs_without_personal_data(
    tmp_path: Path,
) -> None:
    service = start(tmp_path)
    try:
        empty = kycflow(service.db, "audit")
        assert (empty.returncode, empty.stdout.strip()) == (0, "the audit trail is empty: "
                "no erasure, retention run or key rotation yet")  # fmt: skip
        assert trail(service.db) == []
        erased = kycflow(service.db, "erase", "idenfy", "kyc", ALICE[0])
        assert erased.returncode == 0, erased.stderr
        path = f"/verifications/idenfy/kyc/{CARLA[0]}"
        assert service.request("DELETE", path, headers=BEARER)[0] == 200
        # Read while the service runs (and holds the raw log open).
        [by_cli, by_api] = trail(service.db)
    finally:
        service.stop()
    assert {k: by_cli[k] for k in ("action", "by", "subjects", "deliveries")} == {
        "action": "erase", "by": "cli", "subjects": [f"idenfy/kyc/{ALICE[0]}"],
        "deliveries": 3,  # two of hers and the quarantined one naming her
    }  # fmt: skip
    assert set(by_cli) == {"at", "action", "by", "subjects", "deliveries", "keys"}
    assert by_cli["keys"] == 2  # her data key and the quarantined delivery's own
    assert str(by_api["by"]).startswith("api:") and by_api["subjects"] == [f"idenfy/kyc/{CARLA[0]}"]

    time.sleep(1.1)  # the policy below reaches Boris's deliveries
    kept = kycflow(service.db, "retention", KYCFLOW_RETENTION="final+1s")
    assert kept.returncode == 0, kept.stderr
    entries = trail(service.db)
    assert [e["action"] for e in entries] == ["erase", "erase", "retention"]
    assert {k: entries[-1][k] for k in ("by", "subjects", "deliveries", "keys")} == {
        "by": "retention", "subjects": [f"idenfy/kyc/{BORIS[0]}"], "deliveries": 2, "keys": 1,
    }  # fmt: skip
    assert str(entries[0]["at"]) < str(entries[1]["at"]) < str(entries[2]["at"])
    assert trail(service.db, "--limit", "1") == entries[-1:]  # the newest
    text = kycflow(service.db, "audit", "--limit", "2")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.strip().splitlines()
    assert len(lines) == 2 and "retention" in lines[-1] and str(by_api["by"]) in lines[0]
    assert not list(tmp_path.glob("*-wal")), "the read-only reader left its WAL behind"


def test_audit_follows_the_command_line_conventions(tmp_path: Path) -> None:
    helped = run("audit", "--help")
    assert helped.stdout.startswith("usage: kycflow audit") and "`" not in helped.stdout
    assert "environment:" in helped.stdout and "KYCFLOW_MASTER_KEY" not in helped.stdout
    wrong = run("audit", "--limit", "0")
    assert wrong.returncode == 2 and "expected a whole number of at least 1" in wrong.stderr
    missing = tmp_path / "nowhere.db"
    line = one_line_failure(run("audit", "--db", str(missing)), 1)
    assert str(missing) in line and not missing.exists()
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        done = run("audit", env=env_without_kycflow(KYCFLOW_KAFKA_BOOTSTRAP=address))
        assert time.monotonic() - started < 10
    line = one_line_failure(done, 1)
    assert address in line and "KYCFLOW_KAFKA_BOOTSTRAP" in line
