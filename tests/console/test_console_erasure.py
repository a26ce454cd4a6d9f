"""The console after erasure (issue 12), over real HTTP against a real `kycflow serve`.

One subject's personal data is erased through the API (DELETE, with the token), another's
everything with `kycflow erase --all` as a process, while the service runs; a third is left
alone, so every assertion about an erased page has a page that must not say it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import pytest

from ingest import rawlog
from statemachines.normalise import reduced_form
from tests.console.conftest import TOKEN, quarantined_by_an_older_version, wait_applied
from tests.console.test_console_http import BEARER, call
from tests.console.test_console_reprocess import kycflow as quarantine_command
from tests.e2e.service import CREDENTIALS, KYCFLOW, Service
from tests.payloads import idenfy_identification

KEEP, GONE, OTHER = "scan-keep", "scan-gone", "scan-other"
PERSONAL = ("AB123456", "JOHN", "1990-01-01", "Vilnius")  # in every iDenfy sample body
BADGE = re.compile(r'<span class="erased"[^>]*>erased</span>')
# A delivery nobody reads that names KEEP: its erasure reduces it to nothing.
STRAY = ("ondato", {"Content-Type": "application/json"}, json.dumps({"about": KEEP}).encode())


@dataclass
class Erased:
    service: Service
    keep_at: str  # erased_at of KEEP (personal data)
    gone_at: str  # erased_at of GONE (everything)
    keep_offsets: list[int]
    gone_offsets: list[int]
    stray_offset: int


def offsets_of(service: Service, scan: str) -> list[int]:
    status, found = service.get(f"/verifications/idenfy/kyc/{scan}/history", TOKEN)
    assert status == 200, found
    return [event["offset"] for event in found["events"]]


def erase_all_on_the_command_line(service: Service, scan: str) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KYCFLOW_")}
    done = subprocess.run(
        [KYCFLOW, "erase", "idenfy", "kyc", scan, "--all", "--json"],
        env={**clean, "KYCFLOW_DB": str(service.db)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return str(json.loads(done.stdout)[0]["erased_at"])


@pytest.fixture(scope="module")
def erased(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Erased]:
    db = Path(tmp_path_factory.mktemp("console-erasure")) / "kycflow.db"
    service = Service(db, {**CREDENTIALS, "KYCFLOW_API_TOKEN": TOKEN}).start()
    try:
        started = idenfy_identification(
            "IDENTIFICATION_PROCESSING_STARTED", KEEP, final=False, overall="PENDING"
        )
        for webhook in (started, idenfy_identification(scan_ref=KEEP)):
            assert service.send(webhook)[0] == 202
        for scan in (GONE, OTHER):
            assert service.send(idenfy_identification(scan_ref=scan, client_id=scan))[0] == 202
        stray = service.send(STRAY)[1]["offset"]
        wait_applied(service)
        keep, gone = offsets_of(service, KEEP), offsets_of(service, GONE)
        status, _, body = service.request(
            "DELETE", f"/verifications/idenfy/kyc/{KEEP}", headers=BEARER
        )
        assert status == 200, body
        gone_at = erase_all_on_the_command_line(service, GONE)
        yield Erased(service, json.loads(body)["erased_at"], gone_at, keep, gone, stray)
    finally:
        service.stop()


def page(erased: Erased, path: str) -> str:
    status, headers, text = call(erased.service, "GET", path, headers=BEARER)
    assert status == 200, text
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    return text


def rows_linking(text: str, subject: str) -> list[str]:
    """The table rows of a page that link to `subject`."""
    found: list[str] = re.findall(r"<tr>.*?</tr>", text, re.S)
    return [row for row in found if f">{subject}</a>" in row]


def row_of(text: str, subject: str) -> str:
    [row] = rows_linking(text, subject)
    return row


def test_the_timeline_says_when_personal_data_was_erased(erased: Erased) -> None:
    text = page(erased, f"/ui/verifications/idenfy/kyc/{KEEP}")
    assert f'Personal data erased at <time datetime="{erased.keep_at}">' in text
    assert 'id="erased-note"' in text and "Everything erased" not in text
    assert "the decision trail is kept" in text
    assert "approved" in text  # the decision trail
    steps = text.split('id="steps"', 1)[1]
    assert "erasure of personal data" in steps and "<strong>erased</strong>" in steps
    assert len(BADGE.findall(steps)) == len(erased.keep_offsets)  # each reduced delivery
    assert not any(value in text for value in PERSONAL)


def test_the_timeline_of_an_erasure_of_everything(erased: Erased) -> None:
    text = page(erased, f"/ui/verifications/idenfy/kyc/{GONE}")
    assert f'Everything erased at <time datetime="{erased.gone_at}">' in text
    assert "Personal data erased at" not in text
    assert "erasure of everything" in text.split('id="steps"', 1)[1]
    assert 'id="current-status"><span class="status status-none">(none)</span>' in text


def test_a_subject_never_erased_shows_no_erasure(erased: Erased) -> None:
    text = page(erased, f"/ui/verifications/idenfy/kyc/{OTHER}")
    assert "erased-note" not in text and not BADGE.search(text)
    assert "AB123456" not in text  # the timeline never shows a body


def test_a_reduced_delivery_shows_the_event_it_became(erased: Erased) -> None:
    for offset in erased.keep_offsets:
        text = page(erased, f"/ui/deliveries/{offset}")
        assert "Personal data erased — the event it became is kept" in text
        kept = re.search(r'<pre id="kept" tabindex="0">(.*?)</pre>', text, re.S)
        assert kept is not None
        event = json.loads(kept.group(1).replace("&#34;", '"').replace("&quot;", '"'))
        assert event["subject"] == ["idenfy", "kyc", KEEP] and event["reference"] is None
        assert kept.group(1).startswith("{\n  ")  # pretty-printed
        assert 'id="reveal"' not in text and 'id="body"' not in text
        assert not any(value in text for value in PERSONAL)
    last = page(erased, f"/ui/deliveries/{erased.keep_offsets[-1]}")
    assert "&#34;status&#34;: &#34;approved&#34;" in last


def test_reveal_on_a_reduced_delivery_reveals_nothing(erased: Erased) -> None:
    offset = erased.keep_offsets[-1]
    status, _, text = call(erased.service, "POST", f"/ui/deliveries/{offset}", "", BEARER)
    assert status == 200
    assert "the event it became is kept" in text and "revealed-note" not in text
    assert not any(value in text for value in PERSONAL)


def test_deliveries_reduced_to_nothing_say_so(erased: Erased) -> None:
    for offset in [*erased.gone_offsets, erased.stray_offset]:
        text = page(erased, f"/ui/deliveries/{offset}")
        assert "Erased; nothing kept." in text
        assert 'id="kept"' not in text and 'id="body"' not in text and 'id="reveal"' not in text
        assert "masked" not in text  # not an empty body "masked as not JSON"


def test_a_delivery_not_erased_still_masks_and_reveals(erased: Erased) -> None:
    [offset] = offsets_of(erased.service, OTHER)
    text = page(erased, f"/ui/deliveries/{offset}")
    assert 'id="reveal"' in text and "erased-note" not in text and "AB123456" not in text


def test_search_results_mark_erased_subjects(erased: Erased) -> None:
    for scan in (KEEP, GONE):
        row = row_of(
            page(erased, "/ui/verifications?" + urlencode({"q": scan})), f"idenfy/kyc/{scan}"
        )
        assert BADGE.search(row), row
    newest = page(erased, "/ui/verifications?provider=idenfy")
    assert BADGE.search(row_of(newest, f"idenfy/kyc/{KEEP}"))
    assert not BADGE.search(row_of(newest, f"idenfy/kyc/{OTHER}"))


def test_the_overview_marks_erased_subjects(erased: Erased) -> None:
    recent = page(erased, "/ui/").split('id="recent"', 1)[1].split("</table>", 1)[0]
    keep, other = (
        rows_linking(recent, f"idenfy/kyc/{KEEP}"),
        rows_linking(recent, f"idenfy/kyc/{OTHER}"),
    )
    assert keep and all(BADGE.search(row) for row in keep)
    assert other and not any(BADGE.search(row) for row in other)
    assert f">idenfy/kyc/{GONE}</a>" not in recent  # its transitions went with everything


def test_the_erasure_dropped_the_quarantined_delivery_naming_the_subject(erased: Erased) -> None:
    text = page(erased, "/ui/quarantine")
    assert f'href="/ui/deliveries/{erased.stray_offset}"' not in text
    assert 'id="reprocess"' not in text


def reduce_newest(db: Path, kept: bool) -> None:
    """Reduce the raw log's newest delivery: to the event the current code makes of it
    (`kept`), else to nothing — as erasure and retention write it."""
    with contextlib.closing(rawlog.connect(rawlog.raw_log_path(db))) as raw:
        (env,) = rawlog.deliveries(raw, [rawlog.last_offset(raw)])
        event = reduced_form(env) if kept else ""
        assert bool(event) == kept
        with raw:
            raw.execute('INSERT INTO reduced ("offset", event) VALUES (?, ?)', (env.offset, event))


@pytest.fixture(params=[False, True], ids=["nothing kept", "event kept"])
def reduced_in_quarantine(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Service]:
    """A quarantined delivery the current code reads, whose body is then gone: reduced to
    nothing (as between an erasure's commit and the fold that drops its quarantine row, or
    a data key destroyed without a reduction), or to an event. Either way there is no body
    left to re-deliver. Built on real files, then a real service."""
    db = tmp_path / "kycflow.db"
    quarantined_by_an_older_version(db)
    reduce_newest(db, kept=request.param)
    service = Service(db, {**CREDENTIALS, "KYCFLOW_API_TOKEN": TOKEN}).start()
    try:
        yield service
    finally:
        service.stop()


def test_the_quarantine_offers_no_reprocess_for_a_reduced_delivery(
    reduced_in_quarantine: Service,
) -> None:
    service = reduced_in_quarantine
    text = call(service, "GET", "/ui/quarantine", headers=BEARER)[2]
    assert "personal data erased; nothing to reprocess" in text
    assert 'id="reprocess"' not in text and "readable, for" not in text
    report = call(service, "POST", "/ui/quarantine", "", BEARER)[2]
    assert "0 deliveries re-delivered" in report
    assert service.get("/verifications/idenfy/kyc/scan-fixed", TOKEN)[0] == 404
    (item,) = quarantine_command(service, "list")
    assert item["now"] == "erased" and item["subject"] is None
    raw = call(service, "GET", "/ui/deliveries/1", headers=BEARER)[2]
    assert "erased-note" in raw and 'id="reveal"' not in raw
