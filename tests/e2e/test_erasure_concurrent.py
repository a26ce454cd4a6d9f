"""An erasure over the API while deliveries keep arriving, in embedded mode (issue 12).

The writer caches each subject's data key; the erasure destroys it in another process
and bumps the key generation (`ingest.rawlog`). Were the writer to seal a later delivery
under the destroyed key, that delivery would be answered 202 and read as noise. So, on a
real `kycflow serve` (two HTTP workers, sealed raw log), with senders posting deliveries
of the subject and of other subjects throughout: every webhook is answered 202 and is in
the raw log; the subject's deliveries from before the erasure read as the events kept for
them, those accepted after it as new data (readable); no other subject loses anything.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

from ingest import rawlog, sealing
from statemachines.envelope import RawEnvelope
from streams.simulator import samples
from tests.e2e.service import CREDENTIALS, Service
from tests.e2e.test_erasure import BEARER, TOKEN, wait_projected

SCAN = "scan-busy"


def delivery(scan: str, i: int) -> samples.Webhook:
    """A distinct delivery (its own finish time, so its own body)."""
    return samples.idenfy_identification(
        "IDENTIFICATION_AUTO_FINISHED", scan, final=False, finish=1_700_000_060 + i
    )


class Sender(threading.Thread):
    """Posts deliveries until stopped; keeps (when answered, offset, body) of each 202."""

    def __init__(self, service: Service, scan: Callable[[int], str]) -> None:
        super().__init__(daemon=True)
        self.service, self.scan, self.stop = service, scan, threading.Event()
        self.accepted: list[tuple[float, int, bytes]] = []
        self.refused: list[int] = []

    def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            webhook = delivery(self.scan(i), i)
            status, answer = self.service.send(webhook)
            if status == 202:
                self.accepted.append((time.monotonic(), answer["offset"], webhook[2]))
            else:
                self.refused.append(status)
            i += 1


def read_all(db: Path) -> dict[int, RawEnvelope]:
    master = sealing.load_master_keys({}, db)
    path = rawlog.raw_log_path(db)
    with closing(rawlog.connect(path, readonly=True, master=master)) as conn:
        return {env.offset: env for env in rawlog.iterate(conn)}


def test_deliveries_during_an_api_erasure_are_kept_or_readable_never_lost(
    tmp_path: Path,
) -> None:
    service = Service(tmp_path / "kycflow.db", {**CREDENTIALS, "KYCFLOW_API_TOKEN": TOKEN})
    service.start()
    subject = [Sender(service, lambda i: SCAN) for _ in range(2)]
    others = Sender(service, lambda i: f"scan-other-{i}")
    senders = [*subject, others]
    try:
        for sender in senders:
            sender.start()
        deadline = time.monotonic() + 30
        while sum(len(s.accepted) for s in subject) < 40:
            assert time.monotonic() < deadline, "no deliveries accepted"
            time.sleep(0.05)
        began = time.monotonic()
        path = f"/verifications/idenfy/kyc/{SCAN}"
        status, _, answer = service.request("DELETE", path, headers=BEARER)
        ended = time.monotonic()
        assert status == 200, answer
        time.sleep(1.0)  # deliveries of the subject after the erasure: new data
    finally:
        for sender in senders:
            sender.stop.set()
        for sender in senders:
            sender.join(timeout=30)
        try:
            wait_projected(service, timeout=60)
        finally:
            service.stop()

    assert not [code for s in senders for code in s.refused]
    stored = read_all(service.db)
    mine = [a for s in subject for a in s.accepted]
    assert {offset for _, offset, _ in mine + others.accepted} <= set(stored)
    before = [offset for at, offset, _ in mine if at < began]
    after = [(offset, body) for at, offset, body in mine if at > ended]
    assert before and after
    # Reduced to the event it had become: the decision trail stays, the body is gone.
    assert all(stored[o].reduced and not stored[o].body for o in before)
    assert all(stored[o].reduced is None and stored[o].body == body for o, body in after)
    lost = [
        o
        for _, o, _ in mine
        if stored[o].reduced == "" or not (stored[o].reduced or stored[o].body)
    ]
    assert not lost, f"{len(lost)} of {len(mine)} accepted deliveries of the subject kept nothing"
    assert all(stored[o].body == body for _, o, body in others.accepted)
