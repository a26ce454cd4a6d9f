"""Reprocessing the quarantine through the code running now, after a fix.

The "before the fix" state is built with the real raw log writer and projection store: a
delivery the current code reads, quarantined as an older version of the core would have
(an `Unrecognised` step), with the checkpoint past it. A real `kycflow serve` then starts
on those files, so the processor never looks at that offset again until it is reprocessed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.console.conftest import TOKEN, wait_for
from tests.console.test_console_http import BEARER, call, login
from tests.e2e.service import KYCFLOW, Service


def quarantine_with(service: Service, text: str) -> str:
    """The quarantine page once it shows `text` (the processor applies asynchronously)."""
    deadline = time.monotonic() + 10
    while True:
        page = call(service, "GET", "/ui/quarantine", headers=BEARER)[2]
        if text in page or time.monotonic() > deadline:
            return page
        time.sleep(0.05)


def test_reprocess_re_delivers_what_the_code_now_reads(fixed: Service) -> None:
    # Something the current code cannot read either: it stays in the quarantine.
    fixed.send(("idenfy", {"Idenfy-Event-Type": "NO_SUCH_EVENT"}, b'{"unexpected": true}'))
    page = quarantine_with(fixed, "still unreadable")
    assert "before the fix" in page
    assert "readable, for" in page and "idenfy/kyc/scan-fixed" in page
    assert 'id="reprocess"' in page
    assert fixed.get("/verifications/idenfy/kyc/scan-fixed", TOKEN)[0] == 404

    session = login(fixed)
    jar_page = call(fixed, "GET", "/ui/quarantine", headers={"Cookie": session})
    csrf = re.search(r'name="csrf" value="([^"]+)"', jar_page[2])
    assert csrf is not None
    jar = {"Cookie": f"{session}; kycflow_csrf={csrf.group(1)}"}
    assert call(fixed, "POST", "/ui/quarantine", "csrf=forged", jar)[0] == 403
    status, _, report = call(
        fixed, "POST", "/ui/quarantine", urlencode({"csrf": csrf.group(1)}), jar
    )
    assert status == 200, report
    assert "1 delivery re-delivered" in report
    assert "idenfy/kyc/scan-fixed</a>: transition" in report

    wait_for(fixed, "idenfy/kyc/scan-fixed", 1)
    assert fixed.get("/verifications/idenfy/kyc/scan-fixed", TOKEN)[1]["status"] == "approved"
    after = call(fixed, "GET", "/ui/quarantine", headers=BEARER)[2]
    assert "reprocessed into" in after and 'id="reprocess"' not in after
    # Idempotent: nothing readable is left, so a second POST re-delivers nothing.
    again = call(fixed, "POST", "/ui/quarantine", "", BEARER)[2]
    assert "0 deliveries re-delivered" in again


def kycflow(service: Service, *args: str) -> Any:
    env = {
        **os.environ,
        "KYCFLOW_DB": str(service.db),
        "KYCFLOW_PORT": str(service.port),
        "KYCFLOW_API_TOKEN": service.env.get("KYCFLOW_API_TOKEN", ""),
    }
    done = subprocess.run(
        [KYCFLOW, "quarantine", *args, "--json"], env=env, capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("fixed", [TOKEN, None], indirect=True, ids=["token", "open"])
def test_the_command_line_lists_and_reprocesses(fixed: Service) -> None:
    (item,) = kycflow(fixed, "list")
    assert item["now"] == "readable" and item["subject"] == "idenfy/kyc/scan-fixed"
    (done,) = kycflow(fixed, "reprocess")["reprocessed"]
    assert done["subject"] == "idenfy/kyc/scan-fixed" and done["effect"] == "transition"
    assert kycflow(fixed, "list")[0]["now"] == "reprocessed"
    assert kycflow(fixed, "reprocess")["reprocessed"] == []
