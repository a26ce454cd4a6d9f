"""Kafka-mode benchmarks, all figures from one run on this machine (a Tansu broker).

1. Ingest to `kycflow.raw` at 64 connections: `wrk` posts unique IDWise webhooks to
   `kycflow serve` in Kafka mode; every 202 waited for the broker's acknowledgement
   (acks=all, idempotent producer). Webhooks/s, p50, p99.
2. Worker throughput, events/s from `kycflow.raw` to the output topics, for 1 and 2
   `kycflow worker` processes and for the naive baseline (`benchmarks.naive_faust`: a
   Faust Table read and write plus a status send per event). Each run: fresh topics,
   workers started and ready, then RAW_EVENTS realistic raw webhooks (all three providers)
   produced; measured from the first output record to the last, by a separate consumer.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from benchmarks.load import DURATION, TOKEN, WARMUP, Load, running, wrk
from benchmarks.replay_data import build_raw_log
from ingest import rawlog
from statemachines.envelope import envelope_to_json
from statemachines.routing import routing_key
from tests.kafka.stack import Broker

RAW_EVENTS = int(os.environ.get("KYCFLOW_BENCH_KAFKA_EVENTS", "30000"))
PORT = 18750


def kafka_env(broker: Broker, name: str, db: Path) -> dict[str, str]:
    return {
        "KYCFLOW_KAFKA_BOOTSTRAP": broker.bootstrap,
        "KYCFLOW_KAFKA_TOPIC_PREFIX": name,
        "KYCFLOW_KAFKA_GROUP": name,
        "KYCFLOW_KAFKA_SESSION_TIMEOUT": "2",
        "KYCFLOW_KAFKA_REBALANCE_TIMEOUT": "3",
        "KYCFLOW_DB": str(db),
        "KYCFLOW_IDWISE_TOKEN": TOKEN,
        **{k: v for k, v in os.environ.items() if k.startswith("KYCFLOW_KAFKA_")},
    }


def ingest_rows(broker: Broker, work: Path) -> tuple[Load, Load]:
    """Kafka-mode ingest, and embedded ingest under the same load as this host's yardstick
    (its absolute speed drifts by up to ~1.6x between runs; the ratio is steadier)."""
    command = [str(Path(sys.executable).parent / "kycflow"), "serve"]
    loads = []
    for env in (
        {**kafka_env(broker, "ingest", work / "ingest.db"), "KYCFLOW_PORT": str(PORT)},
        {"KYCFLOW_DB": str(work / "embedded.db"), "KYCFLOW_PORT": str(PORT + 1),
         "KYCFLOW_IDWISE_TOKEN": TOKEN},
    ):  # fmt: skip
        with running(command, env, int(env["KYCFLOW_PORT"])) as url:
            wrk(url, WARMUP)
            loads.append(wrk(url, DURATION))
    return loads[0], loads[1]


@contextlib.contextmanager
def workers(command: list[str], env: dict[str, str], count: int, log: Path) -> Iterator[None]:
    processes = []
    for index in range(count):
        with open(log.with_suffix(f".{index}.log"), "wb") as out:
            processes.append(
                subprocess.Popen(
                    command,
                    env={**os.environ, **env},
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
    try:
        yield
    finally:
        for process in processes:
            os.killpg(process.pid, 15)
        for process in processes:
            process.wait(timeout=60)


def produce(broker: Broker, topic: str, raw_db: Path) -> int:
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=5)
    count = 0
    with contextlib.closing(rawlog.connect(raw_db, readonly=True)) as raw:
        for env in rawlog.iterate(raw):
            producer.send(topic, envelope_to_json(env), key=routing_key(env))
            count += 1
    producer.flush()
    producer.close()
    return count


def count_outputs(broker: Broker, topics: list[str], expected: int) -> float:
    """Events/s from the first output record seen to the last expected one."""
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
    partitions = [
        TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()
    ]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    seen, first, deadline = 0, 0.0, time.monotonic() + 600
    while seen < expected and time.monotonic() < deadline:
        polled = consumer.poll(timeout_ms=100)
        batch = sum(len(messages) for messages in polled.values())
        if batch and not first:
            first = time.monotonic()
        seen += batch
    consumer.close()
    if seen < expected:
        raise RuntimeError(f"only {seen} of {expected} outputs")
    return expected / (time.monotonic() - first)


def worker_rate(broker: Broker, work: Path, raw_db: Path, name: str, count: int) -> float:
    from streams.kafka.config import KafkaSettings, ensure_topics

    env = kafka_env(broker, name, work / f"{name}.db")
    settings = KafkaSettings.from_config(env)
    assert settings is not None
    ensure_topics(settings)
    naive = name.startswith("naive")
    command = (
        [sys.executable, "-m", "benchmarks.naive_faust"]
        if naive
        else [str(Path(sys.executable).parent / "kycflow"), "worker", "--loglevel", "warning"]
    )
    outputs = ["status"] if naive else ["transitions", "annotations", "quarantine"]
    with workers(command, env, count, work / name):
        time.sleep(4.0 + 4.0 * (count - 1))  # group joined (Tansu: ~session/2 per join)
        produced = produce(broker, settings.topic("raw"), raw_db)
        # One output per raw webhook (the naive agent: a status per readable one, and
        # this data has no unreadable webhooks).
        return count_outputs(broker, [settings.topic(t) for t in outputs], produced)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="kycflow-kbench-") as tmp:
        work = Path(tmp)
        broker = Broker().start()
        try:
            ingest, embedded = ingest_rows(broker, work)
            raw_db = rawlog.raw_log_path(work / "data.db")
            build_raw_log(raw_db, RAW_EVENTS)
            naive = worker_rate(broker, work, raw_db, "naive", 1)
            one = worker_rate(broker, work, raw_db, "one", 1)
            two = worker_rate(broker, work, raw_db, "two", 2)
        finally:
            broker.stop()
    print(report(ingest, embedded, naive, one, two))


def report(ingest: Load, embedded: Load, naive: float, one: float, two: float) -> str:
    rows = [
        ("Kafka-mode ingest, 64 conns (acks=all)", f"{ingest.rate:,.0f}/s",
         f"p50 {ingest.p50_ms:.1f} ms, p99 {ingest.p99_ms:.1f} ms, {ingest.errors} errors",
         ">= 8,000/s"),
        ("  embedded ingest, same run (yardstick)", f"{embedded.rate:,.0f}/s",
         f"Kafka mode = {ingest.rate / embedded.rate:.0%} of it", ""),
        ("worker: naive agent (Table write + send per event)", f"{naive:,.0f} ev/s",
         f"{RAW_EVENTS:,} raw webhooks", "baseline"),
        ("worker: kycflow worker x1", f"{one:,.0f} ev/s", f"{one / naive:.1f}x baseline",
         ">= 3,500/s, >= 2x"),
        ("worker: kycflow worker x2", f"{two:,.0f} ev/s", f"{two / one:.2f}x one worker", ""),
    ]  # fmt: skip
    head = ("measure", "result", "detail", "target")
    width = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(head, width, strict=True))]
    lines.append("  ".join("-" * w for w in width))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, width, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
