"""The console in Kafka mode against a real broker (Tansu): reprocessing the quarantine.

"Before the fix" is a real worker running an older normaliser (`older_worker`) that could
not read one iDenfy webhook; "the fix" is the real `kycflow worker` taking over the group.
Reprocessing appends the delivery to the raw topic again, the worker folds it and the
projector projects it, as for a provider's retry.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.console.conftest import TOKEN, wait_for
from tests.console.older_worker import FIXED, REASON
from tests.console.test_console_http import BEARER, call
from tests.e2e.service import KYCFLOW, free_port
from tests.kafka.stack import Broker, KafkaStack
from tests.kafka.test_kafka_mode import send_all
from tests.payloads import idenfy_identification


@pytest.fixture(scope="module")
def broker() -> Iterator[Broker]:
    running = Broker().start()
    yield running
    running.stop()


@pytest.fixture
def stack(broker: Broker, tmp_path: Path) -> Iterator[KafkaStack]:
    deployment = KafkaStack(broker, tmp_path, overrides={"KYCFLOW_API_TOKEN": TOKEN})
    yield deployment
    deployment.stop()


def quarantine(stack: KafkaStack, *args: str) -> Any:
    """`kycflow quarantine ... --json` with the deployment's settings."""
    assert stack.service is not None
    env = {**os.environ, **stack.env, "KYCFLOW_PORT": str(stack.service.port)}
    done = subprocess.run(
        [KYCFLOW, "quarantine", *args, "--json"], env=env, capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_reprocess_the_quarantine_in_kafka_mode(stack: KafkaStack) -> None:
    service = stack.serve()
    older = stack.start_worker(argv=[sys.executable, "-m", "tests.console.older_worker"])
    stack.start_projector()
    send_all(service, [idenfy_identification(scan_ref=FIXED), idenfy_identification()])
    stack.wait_projected(2)
    page = call(service, "GET", "/ui/quarantine", headers=BEARER)[2]
    assert REASON in page and "readable, for" in page
    overview = call(service, "GET", "/ui/", headers=BEARER)[2]
    assert 'data-state="unset"' in overview  # no projector metrics port configured here
    assert service.get(f"/verifications/idenfy/kyc/{FIXED}", TOKEN)[0] == 404

    stack.kill(older)  # the fix is deployed: the real worker takes the group over
    stack.start_worker(index=0)
    (item,) = quarantine(stack, "list")  # raw bodies read from the raw topic
    assert item["now"] == "readable" and item["subject"] == f"idenfy/kyc/{FIXED}"
    (done,) = quarantine(stack, "reprocess")["reprocessed"]
    assert done["subject"] == f"idenfy/kyc/{FIXED}" and done["effect"] == "transition"
    assert done["offset"] != item["offset"]  # a new position on the raw topic

    wait_for(service, f"idenfy/kyc/{FIXED}", 1)
    assert service.get(f"/verifications/idenfy/kyc/{FIXED}", TOKEN)[1]["status"] == "approved"
    assert quarantine(stack, "list")[0]["now"] == "reprocessed"
    after = call(service, "GET", "/ui/quarantine", headers=BEARER)[2]
    assert "reprocessed into" in after and 'id="reprocess"' not in after
    again = call(service, "POST", "/ui/quarantine", "", BEARER)  # the console's button
    assert again[0] == 200 and "0 deliveries re-delivered" in again[2]


def overview_lag(stack: KafkaStack, wanted: str) -> str:
    """The overview's lag entry once it holds `wanted` (the projector publishes each second)."""
    assert stack.service is not None
    deadline = time.monotonic() + 10
    while True:
        page = call(stack.service, "GET", "/ui/", headers=BEARER)[2]
        found = re.search(r'<dd id="lag"[^>]*>(.*?)</dd>', page, re.S)
        assert found is not None, page
        if wanted in found.group(0) or time.monotonic() > deadline:
            return found.group(0)
        time.sleep(0.1)


def test_the_overview_shows_the_projectors_lag(broker: Broker, tmp_path: Path) -> None:
    port = str(free_port())
    overrides = {"KYCFLOW_API_TOKEN": TOKEN, "KYCFLOW_PROJECTOR_METRICS_PORT": port}
    stack = KafkaStack(broker, tmp_path, overrides=overrides)
    try:
        service = stack.serve()
        stack.start_worker()
        stack.start_projector()
        send_all(service, [idenfy_identification(scan_ref=f"scan-{n}") for n in range(3)])
        stack.wait_projected(3)
        caught_up = overview_lag(stack, 'data-state="ok"')
        assert 'data-state="ok"' in caught_up and ">0</dd>" in caught_up
        stack.kill(stack.projector)  # type: ignore[arg-type]
        gone = overview_lag(stack, "does not answer")
        assert f"127.0.0.1:{port}/healthz" in gone
    finally:
        stack.stop()
