"""The integrator's own reference end to end (issue 10 §4): a real `kycflow serve`, real
signed webhooks, the read API over HTTP and `kycflow inspect --reference` as a process.

One integrator id, `cust-1`, is the iDenfy clientId of a scan and the IDWise referenceNo
of a journey; the scan's externalRef `order-7` is its other reference.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator

import pytest

from tests import payloads as p
from tests.e2e.service import CREDENTIALS, KYCFLOW, Service

SCAN, JOURNEY = "scan-ref", "journey-ref"
SUBJECTS = [f"idenfy/kyc/{SCAN}", f"idwise/kyc/{JOURNEY}"]
MARKUP = "[/][bold]ref"  # not rich markup to the terminal: what the provider sent
WEBHOOKS = [
    p.idenfy_identification(
        "IDENTIFICATION_AUTO_FINISHED", SCAN, final=False, client_id="cust-1"
    ),
    p.idenfy_identification(
        "IDENTIFICATION_MANUAL_FINISHED", SCAN, manual=True, client_id="cust-1",
        external_ref="order-7",
    ),
    p.idwise("Finished User Steps", event_id="e-1", journey=JOURNEY, referenceNo="cust-1"),
    p.ondato_kyb("Created", "kyb-ref", webhook_id="w-1"),  # no reference at all
    p.idwise("Finished User Steps", event_id="e-2", journey="j-[/]", referenceNo=MARKUP),
]  # fmt: skip


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    service = Service(tmp_path_factory.mktemp("references") / "kycflow.db", dict(CREDENTIALS))
    service.start()
    try:
        for webhook in WEBHOOKS:
            assert service.send(webhook)[0] == 202
        service.wait_projected()
        yield service
    finally:
        service.stop()


def listed(service: Service, query: str) -> list[str]:
    status, page = service.get(f"/verifications?{query}")
    assert status == 200, page
    return [f"{row['provider']}/{row['kind']}/{row['id']}" for row in page["items"]]


def test_the_read_api_finds_verifications_by_reference_and_by_provider_id(
    served: Service,
) -> None:
    assert listed(served, "reference=cust-1") == SUBJECTS
    assert listed(served, "reference=order-7") == SUBJECTS[:1]
    assert listed(served, "reference=cust-1&provider=idwise") == SUBJECTS[1:]
    assert listed(served, f"id={SCAN}") == SUBJECTS[:1]
    assert listed(served, "reference=nobody") == []
    status, row = served.get(f"/verifications/{SUBJECTS[0]}")
    assert status == 200
    assert (row["reference"], row["references"]) == ("cust-1", ["cust-1", "order-7"])
    assert served.get("/verifications/ondato/kyb/kyb-ref")[1]["reference"] is None
    status, refused = served.get("/verifications?reference=")
    assert status == 400 and "reference" in refused["error"]


def kycflow(service: Service, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KYCFLOW_")}
    env |= {"KYCFLOW_DB": str(service.db)}
    return subprocess.run(
        [KYCFLOW, "inspect", *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_inspect_reference_explains_every_subject_with_it(served: Service) -> None:
    done = kycflow(served, "--reference", "cust-1", "--json")
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["reference"] == "cust-1"
    subjects = found["subjects"]
    assert [f"{s['projection']['provider']}/{s['projection']['kind']}/{s['projection']['id']}"
            for s in subjects] == SUBJECTS  # fmt: skip
    for one in subjects:  # the projection the HTTP API serves, and the timeline behind it
        key = "/".join(one["projection"][name] for name in ("provider", "kind", "id"))
        assert one["projection"] == served.get(f"/verifications/{key}")[1]
        assert one["timeline"] and all(step["effect"] for step in one["timeline"])
    assert [step["effect"] for step in subjects[0]["timeline"]] == ["transition"] * 2


def test_inspect_reference_for_a_human_lists_then_explains(served: Service) -> None:
    done = kycflow(served, "--reference", "order-7")
    assert done.returncode == 0, done.stderr
    assert "reference order-7" in done.stdout and SUBJECTS[0] in done.stdout
    assert SUBJECTS[1] not in done.stdout
    assert "transition:" in done.stdout and "cust-1" in done.stdout


def test_inspect_shows_references_and_ids_as_sent(served: Service) -> None:
    done = kycflow(served, "--reference", MARKUP)
    assert done.returncode == 0, done.stderr
    assert f"reference {MARKUP}" in done.stdout and "idwise/kyc/j-[/]" in done.stdout


def test_inspect_reference_that_nothing_carries_exits_1_saying_so(served: Service) -> None:
    done = kycflow(served, "--reference", "nobody")
    assert done.returncode == 1
    assert "no subject with reference 'nobody'" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "args",
    [("--reference", "cust-1", "idenfy", "kyc", SCAN), ("idenfy", "kyc"), ()],
    ids=["both", "part of a subject", "neither"],
)
def test_inspect_needs_one_subject_or_one_reference(served: Service, args: tuple[str, ...]) -> None:
    done = kycflow(served, *args)
    assert done.returncode == 2
    assert "PROVIDER KIND ID" in done.stderr and "Traceback" not in done.stderr
