"""An erasure while deliveries for the subject keep arriving (`streams.erasure.kafka`): an
HTTP worker seals under a subject's data key for KEY_REUSE seconds after making it, so an
erasure that destroyed the key at once would turn the deliveries it accepts meanwhile into
noise with no event kept — answered 202 and lost. Real `kycflow serve` (two HTTP workers),
`kycflow worker`, `kycflow project` and `kycflow erase`, on the real broker."""

from __future__ import annotations

import json
import threading
import time

from streams.kafka.keys import RecordOpener
from streams.simulator import samples
from tests.e2e.service import Service
from tests.kafka.stack import KafkaStack, raw_records
from tests.kafka.test_sealing_helpers import sealed, settings, start_worker

SCAN = "scan-busy"


def delivery(i: int) -> samples.Webhook:
    """A distinct delivery for the subject (its own finish time, so its own body)."""
    return samples.idenfy_identification(
        "IDENTIFICATION_AUTO_FINISHED", SCAN, final=False, finish=1_700_000_060 + i
    )


class Sender(threading.Thread):
    """Posts deliveries for the subject until stopped; keeps the positions answered 202."""

    def __init__(self, service: Service) -> None:
        super().__init__(daemon=True)
        self.service, self.stop = service, threading.Event()
        self.accepted: list[tuple[float, int]] = []  # (when answered, raw position)

    def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            status, answer = self.service.send(delivery(i))
            if status == 202:
                self.accepted.append((time.monotonic(), answer["offset"]))
            i += 1
            time.sleep(0.02)


def test_no_delivery_accepted_during_an_erasure_is_lost(stack: KafkaStack) -> None:
    master = sealed(stack)
    service = stack.serve()
    start_worker(stack)
    stack.start_projector()
    sender = Sender(service)
    sender.start()
    try:
        deadline = time.monotonic() + 30
        while len(sender.accepted) < 20:  # both HTTP workers hold a key of the subject
            assert time.monotonic() < deadline, "no deliveries accepted"
            time.sleep(0.05)
        began = time.monotonic()
        erased = stack.run("erase", "idenfy", "kyc", SCAN, "--json", timeout=120)
        ended = time.monotonic()
        # Past any key a worker held when the erasure listed them: were it destroyed while
        # still in use, these deliveries would be sealed under it.
        time.sleep(6)
    finally:
        sender.stop.set()
        sender.join(timeout=30)
    assert erased.returncode == 0, erased.stderr
    (done,) = json.loads(erased.stdout)
    assert done["deliveries"] >= 20 and done["keys"] >= 1, done

    stored = raw_records(stack)
    accepted = [pos for _, pos in sender.accepted]
    assert set(accepted) <= set(stored)
    opener = RecordOpener(settings(stack), master)
    try:
        opened = opener.open([(pos, stored[pos]) for pos in sorted(accepted)])
    finally:
        opener.close()
    lost = [env.offset for env in opened if env.reduced == ""]
    assert not lost, f"{len(lost)} of {len(opened)} accepted deliveries kept nothing: {lost}"
    # Controls: the erasure reduced what came before it, and what came well after it is
    # new data, readable.
    kept = {env.offset: env.reduced for env in opened if env.reduced}
    assert {tuple(json.loads(event)["subject"]) for event in kept.values()} == {
        ("idenfy", "kyc", SCAN)
    }
    before = {pos for at, pos in sender.accepted if at < began}
    assert before <= set(kept)
    after = {pos for at, pos in sender.accepted if at > ended + 1}
    readable = {env.offset for env in opened if env.reduced is None and env.body}
    assert after and after <= readable
