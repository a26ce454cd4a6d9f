"""`kycflow keys rotate`: every data key rewrapped under the first master key, after which
the old key can go — and the log no longer opens with the old key alone."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path

from ingest import rawlog, sealing
from ingest.sealing import MasterKeys
from tests.e2e.test_erasure import ALICE, kycflow, start


def masters(db: Path) -> set[str]:
    with sqlite3.connect(db.with_name("kycflow.raw.db")) as raw:
        return {row[0] for row in raw.execute("SELECT master FROM data_keys")}


def test_rotation_rewraps_every_key_under_the_new_master_key(tmp_path: Path) -> None:
    service = start(tmp_path)
    service.stop()
    old = sealing.master_key_path(service.db).read_text().strip()
    new = sealing.new_master_key()
    both = {"KYCFLOW_MASTER_KEY": f"{new},{old}"}
    done = kycflow(service.db, "keys", "rotate", "--json", **both)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["rewrapped"], report["keys"]) == (4, 4)
    assert masters(service.db) == {report["master"]} != {sealing.fingerprint(old.encode())}
    again = kycflow(service.db, "keys", "rotate", "--json", **both)
    assert json.loads(again.stdout)["rewrapped"] == 0
    with contextlib.closing(
        rawlog.connect(
            rawlog.raw_log_path(service.db), readonly=True, master=MasterKeys.parse(new, "new")
        )
    ) as raw:
        assert sum(ALICE[2].encode() in env.body for env in rawlog.iterate(raw)) == 2
    opened = kycflow(service.db, "inspect", "idenfy", "kyc", ALICE[0], KYCFLOW_MASTER_KEY=new)
    assert opened.returncode == 0, opened.stderr
    refused = kycflow(service.db, "inspect", "idenfy", "kyc", ALICE[0], KYCFLOW_MASTER_KEY=old)
    assert refused.returncode == 2 and "master key" in refused.stderr
    with sqlite3.connect(service.db.with_name("kycflow.raw.db")) as raw:
        assert raw.execute("SELECT action, keys FROM audit").fetchall() == [
            ("rotate", 4), ("rotate", 0),
        ]  # fmt: skip
