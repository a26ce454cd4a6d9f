"""A crash in the middle of an erasure leaves the old raw log or the new one, never half.

`kycflow erase` runs in a child process whose hook inside the raw-log transaction (after
every change, before COMMIT) kills it with SIGKILL: no handler, no rollback of its own.
SQLite must then present the log as it was; running the command again completes it.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from ingest import rawlog, sealing
from tests.e2e.test_erasure import ALICE, CARLA, kycflow, only_others_remain, start, values

KILLED_INSIDE = """
import os, signal, sys
from streams.erasure import embedded
def die() -> None:
    print("inside the transaction", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
embedded.inside_transaction = die
from streams.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def raw_state(db: Path) -> tuple[int, int, int, list[str]]:
    """(data keys, reduced rows, erasure records, Alice's bodies as read with the key)."""
    master = sealing.load_master_keys({}, db)
    with contextlib.closing(rawlog.connect(rawlog.raw_log_path(db), master=master)) as raw:
        keys = raw.execute("SELECT count(*) FROM data_keys").fetchone()[0]
        reduced = raw.execute("SELECT count(*) FROM reduced").fetchone()[0]
        records = raw.execute("SELECT count(*) FROM raw_log WHERE provider = 'kycflow'")
        bodies = [env.body.decode() for env in rawlog.iterate(raw) if ALICE[2].encode() in env.body]
        return int(keys), int(reduced), int(records.fetchone()[0]), bodies


def test_a_kill_inside_the_transaction_leaves_the_old_log_and_a_rerun_completes(
    tmp_path: Path,
) -> None:
    service = start(tmp_path)
    service.stop()
    before = raw_state(service.db)
    assert before[:3] == (4, 0, 0) and len(before[3]) == 2  # 3 subjects + the stray's key
    env = {k: v for k, v in os.environ.items() if not k.startswith("KYCFLOW_")}
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_INSIDE, "erase", "idenfy", "kyc", ALICE[0]],
        env={**env, "KYCFLOW_DB": str(service.db)}, capture_output=True, text=True,
        timeout=120, cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    assert killed.returncode == -9 and "inside the transaction" in killed.stdout, killed
    assert raw_state(service.db) == before  # fully old
    with sqlite3.connect(service.db) as db:
        assert db.execute("SELECT count(*) FROM verifications").fetchone()[0] == 3
    done = kycflow(service.db, "erase", "idenfy", "kyc", ALICE[0])
    assert done.returncode == 0, done.stderr
    after = raw_state(service.db)
    assert after == (2, 3, 1, [])  # fully new: Alice's key and the stray's gone
    only_others_remain(tmp_path, [*values(ALICE), "Strayname"], values(CARLA), clear=False)
