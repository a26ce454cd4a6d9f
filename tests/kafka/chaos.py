"""A whole Kafka-mode deployment killed and restarted while it folds (issue 14).

`kycflow serve`, two workers and the projector on one database and one broker, fed by
senders that deliver simulator traffic (every lifecycle kind, reordered, ~20 % repeated)
and retry whatever was not acknowledged, as providers do. `Deployment.kill` SIGKILLs every
process at once, as an operator's process manager losing the host would.
"""

from __future__ import annotations

import os
import queue
import random
import signal
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from streams.simulator.samples import Webhook
from streams.simulator.simulate import lifecycles, plan
from tests.e2e.service import Service, free_port, signed
from tests.kafka.stack import KafkaStack

PROJECTED = "(SELECT count(*) FROM subject_events) + (SELECT count(*) FROM quarantine)"


def traffic(seed: int, verifications: int) -> list[Webhook]:
    rng = random.Random(seed)
    deliveries = plan(rng, lifecycles(rng, verifications), reorder=True, duplicates=True)
    return [delivery.webhook for delivery in deliveries]


class Senders:
    """`count` threads posting webhooks in order, each retried until answered 202."""

    def __init__(self, webhooks: list[Webhook], count: int = 8, pace: float = 0.0) -> None:
        self.todo: queue.Queue[Webhook] = queue.Queue()
        for webhook in webhooks:
            self.todo.put(webhook)
        self.url: str | None = None  # None while the deployment is down
        self.pace, self.acked, self.stopping = pace, 0, False
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(count)]

    def start(self, url: str) -> Senders:
        self.url = url
        for thread in self.threads:
            thread.start()
        return self

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self.threads)

    def stop(self) -> None:
        self.stopping = True
        self.wait(10)

    def _run(self) -> None:
        while not self.stopping:
            try:
                webhook = self.todo.get_nowait()
            except queue.Empty:
                return
            while not self.stopping and not self._post(webhook):
                time.sleep(0.1)  # a provider's retry, compressed
            self.acked += 1
            time.sleep(self.pace)

    def _post(self, webhook: Webhook) -> bool:
        if self.url is None:
            return False
        provider, headers, body = webhook
        request = urllib.request.Request(
            f"{self.url}/webhooks/{provider}",
            data=body,
            method="POST",
            headers={**headers, **signed(provider, body)},
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return bool(response.status == 202)
        except (OSError, urllib.error.URLError):  # refused, reset, 503, timeout: retry
            return False


@dataclass
class Deployment:
    stack: KafkaStack
    port: int = field(default_factory=free_port)
    service: Service | None = None

    def start(self) -> None:
        """Two workers, serve and the projector, started together (workers not awaited)."""
        for index in range(2):
            self.stack.start_worker(wait=False, index=index)
        self.service = Service(self.stack.db, self.stack.env, port=self.port).start(timeout=30)
        self.stack.start_projector()

    def kill(self) -> None:
        """SIGKILL every process at once, then reap them."""
        processes = [*self.stack.workers, self.stack.projector]
        if self.service is not None and self.service.process is not None:
            processes.append(self.service.process)
        for process in processes:
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
        for process in processes:
            if process is not None:
                process.wait(timeout=30)
        if self.service is not None:
            self.service.process = None
            self.service.log.close()
            self.service = None

    def stop(self) -> None:
        self.kill()

    def projected(self) -> int:
        try:
            with sqlite3.connect(self.stack.db, timeout=1) as db:
                return int(db.execute(f"SELECT {PROJECTED}").fetchone()[0])
        except sqlite3.Error:
            return 0

    def wait_folding(self, timeout: float = 45.0) -> bool:
        """Until the projection grows: the restarted workers are folding."""
        start, deadline = self.projected(), time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.projected() > start:
                return True
            time.sleep(0.05)
        return False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


SYMPTOMS = (
    "re-read",  # the Folder found records the consumer skipped (and folded them)
    "folding stalled",  # the watchdog found a stall (and re-sought)
    "still stalled",  # ... and gave up
)


def symptoms(stack: KafkaStack) -> list[str]:
    """Worker log lines saying records were skipped or folding stalled: each is healed,
    but a healthy deployment has none (before the fix, 4 runs in 10 had some)."""
    return [
        line
        for index in range(2)
        for line in stack.read_log(f"worker{index}").splitlines()
        if any(symptom in line for symptom in SYMPTOMS)
    ]
