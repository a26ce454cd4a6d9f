"""`kycflow normalise`, run as the installed console script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests import payloads as p

KYCFLOW = Path(sys.executable).parent / "kycflow"


def run(*args: str, stdin: bytes = b"") -> tuple[int, dict]:
    done = subprocess.run([str(KYCFLOW), *args], input=stdin, capture_output=True, timeout=60)
    return done.returncode, json.loads(done.stdout)


def test_normalise_shows_the_canonical_event_and_projection(tmp_path: Path) -> None:
    _, _, body = p.idenfy_identification(
        "IDENTIFICATION_MANUAL_FINISHED", "scan-9", overall="DENIED", manual=True
    )
    path = tmp_path / "body.json"
    path.write_bytes(body)
    code, out = run(
        "normalise", "idenfy", str(path), "--event-type", "IDENTIFICATION_MANUAL_FINISHED"
    )
    assert code == 0
    assert out["event"]["subject"] == {"provider": "idenfy", "kind": "kyc", "id": "scan-9"}
    assert out["projection"]["status"] == "rejected"
    assert out["projection"]["decided_by"] == "manual"


def test_normalise_explains_unreadable_input_and_exits_non_zero() -> None:
    code, out = run("normalise", "ondato", "-", stdin=b"not json")
    assert code == 1
    assert out["unrecognised"].startswith("body is not valid JSON")
