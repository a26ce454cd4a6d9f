"""Stalls provoked inside a real worker (tests/kafka/faulty_worker.py) are seen and healed.

- skip: a raw partition moved to its end without delivering, with no committed offset to
  go back to (what the Faust bug of issue 14 left behind): re-seeking heals it.
- pause: raw partitions left paused after recovery: re-seeking resumes them.
- stuck: nothing in-process helps: the worker turns unhealthy, gives up with exit code 75,
  and a restarted worker folds everything.
Each test fails without the watchdog: the partitions are never folded.
"""

from __future__ import annotations

import http.client
import json
import sqlite3
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from tests.e2e.service import free_port
from tests.kafka.stack import KafkaStack
from tests.kafka.test_faults import many_verifications, produce

STALL = "3"  # seconds without progress before the watchdog acts


def faulty(fault: str) -> list[str]:
    return [sys.executable, "-m", "tests.kafka.faulty_worker", fault]


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def metric(text: str, name: str) -> dict[str, float]:
    """The samples of one metric family, by label text ('' without labels)."""
    found = {}
    for line in text.splitlines():
        if line.startswith((name + "{", name + " ")):
            labels, _, value = line[len(name) :].rpartition(" ")
            found[labels] = float(value)
    return found


def until(port: int, ready: Callable[[str], bool], timeout: float = 10.0) -> str:
    """The worker's metrics once `ready` holds for them (the watchdog runs every second)."""
    deadline = time.monotonic() + timeout
    while True:
        status, text = get(port, "/metrics")
        assert status == 200
        if ready(text) or time.monotonic() > deadline:
            return text
        time.sleep(0.2)


def folded(stack: KafkaStack) -> set[int]:
    with sqlite3.connect(stack.db) as db:
        return {row[0] for row in db.execute('SELECT "offset" FROM subject_events')}


def start(stack: KafkaStack, fault: str, wait: bool) -> tuple[Any, int]:
    port = free_port()
    env = {"KYCFLOW_KAFKA_STALL_TIMEOUT": STALL, "KYCFLOW_WORKER_METRICS_PORT": str(port)}
    return stack.start_worker(wait=wait, argv=faulty(fault), env=env), port


def test_a_partition_skipped_to_its_end_is_reread_and_folded(stack: KafkaStack) -> None:
    positions = produce(stack, many_verifications(60))
    stack.start_projector(env={"KYCFLOW_PROJECTOR_METRICS_PORT": str(projector := free_port())})
    _, port = start(stack, "skip", wait=False)
    stack.wait_projected(len(positions), timeout=60)
    assert folded(stack) == set(positions)
    log = stack.read_log("worker0")
    assert "FAULT: moved" in log and "folding stalled" in log and "still stalled" not in log
    text = until(port, lambda text: metric(text, "kycflow_worker_stalled") == {"": 0.0})
    assert metric(text, "kycflow_worker_stall_heals_total") == {"": 1.0}
    lags = metric(text, "kycflow_worker_partition_lag_records")
    assert len(lags) == 4 and set(lags.values()) == {0.0}, lags  # all four raw partitions
    assert get(port, "/healthz")[0] == 200
    # The projector publishes the same per-partition view of the output topics.
    status, text = get(projector, "/metrics")
    lags = metric(text, "kycflow_projector_partition_lag_records")
    assert status == 200 and len(lags) == 16 and set(lags.values()) == {0.0}, lags
    status, body = get(projector, "/healthz")
    assert status == 200 and json.loads(body)["status"] == "ok"


def test_partitions_left_paused_are_resumed(stack: KafkaStack) -> None:
    stack.start_projector()
    start(stack, "pause", wait=True)
    stack.wait_for_line("worker0", "FAULT: paused")
    positions = produce(stack, many_verifications(40))
    stack.wait_projected(len(positions), timeout=60)
    assert folded(stack) == set(positions)
    log = stack.read_log("worker0")
    assert "folding stalled" in log and "still stalled" not in log


def test_a_stall_nothing_heals_is_unhealthy_then_exits_for_a_restart(stack: KafkaStack) -> None:
    stack.start_projector()
    worker, port = start(stack, "stuck", wait=True)
    positions = produce(stack, many_verifications(40))
    unhealthy: dict[str, Any] = {}
    metrics = ""
    deadline = time.monotonic() + 30
    while worker.poll() is None and time.monotonic() < deadline and not metrics:
        try:
            status, body = get(port, "/healthz")
            if status == 503:
                unhealthy, metrics = json.loads(body), get(port, "/metrics")[1]
        except (OSError, http.client.HTTPException):  # stopping: the server goes mid-answer
            break
        time.sleep(0.2)
    assert unhealthy["status"] == "stalled" and unhealthy["stalled"], unhealthy
    assert metric(metrics, "kycflow_worker_stalled") == {"": 1.0}
    assert 1.0 in metric(metrics, "kycflow_worker_partition_stalled").values()
    assert worker.wait(timeout=60) == 75
    assert "still stalled after re-seeking" in stack.read_log("worker0")
    # What the supervisor does: start it again (a healthy worker this time).
    stack.start_worker(index=0)
    stack.wait_projected(len(positions), timeout=60)
    assert folded(stack) == set(positions)


def test_the_projector_re_seeks_a_skipped_partition_and_gives_up_on_a_stuck_one(
    stack: KafkaStack,
) -> None:
    """The projector's loop, driven by hand: a real consumer on real topics, one status
    partition moved to its end unread (healed), then one paused for good (fatal)."""
    from kafka import KafkaProducer, TopicPartition

    from streams.kafka.config import KafkaSettings, ensure_topics
    from streams.kafka.project import _consumer
    from streams.kafka.projector_watch import ProjectorStalled, ProjectorWatch

    settings = KafkaSettings.from_config(stack.env)
    assert settings is not None
    ensure_topics(settings)
    status = TopicPartition(settings.topic("status"), 0)
    producer = KafkaProducer(bootstrap_servers=settings.servers)
    for _ in range(30):
        producer.send(status.topic, b"{}", partition=0)
    producer.flush()
    producer.close()
    consumer, _ = _consumer(settings, {})
    try:
        consumer.seek(status, 30)  # what a dropped fetch leaves: past records never applied
        applied: dict[tuple[str, int], int] = {}  # the checkpoint, as the database keeps it
        # The stall timeout: generous, as a slow CI host once took over a second to fetch
        # after the re-seek and the watch gave up on a partition it had just healed.
        timeout = 3.0
        partitions = sorted(consumer.assignment())
        watch = ProjectorWatch(consumer, partitions, lambda: applied, timeout, None)
        read: list[int] = []
        deadline = time.monotonic() + 30
        while len(read) < 30 and time.monotonic() < deadline:
            watch.tick(0)
            read += [m.offset for m in consumer.poll(timeout_ms=100).get(status, [])]
            if read:
                applied[(status.topic, 0)] = read[-1] + 1
        assert read == list(range(30)) and watch.heals == 1
        time.sleep(1.0)
        watch.tick(0)  # caught up: the episode is over
        consumer.pause(status)  # a fetch that never resumes: re-seeking cannot help
        applied.clear()
        with pytest.raises(ProjectorStalled, match=r"still stalled .*status\[0\] at offset 0"):
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                watch.tick(0)
                consumer.poll(timeout_ms=100)
        assert watch.heals == 2
    finally:
        consumer.close()
