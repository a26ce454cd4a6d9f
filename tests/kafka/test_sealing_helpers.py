"""Helpers (no tests) of the Kafka-mode sealing and erasure tests: a sealed deployment,
bodies with personal values of their own, and byte scans of every topic of a deployment."""

from __future__ import annotations

import asyncio
import base64
import os
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from ingest.appending import Receipt
from ingest.sealing import MasterKeys
from statemachines.envelope import RawEnvelope
from streams.kafka.config import KafkaSettings
from streams.simulator import samples
from tests.kafka.stack import KafkaStack


def key_text() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def sealed(stack: KafkaStack) -> MasterKeys:
    """Give the deployment a master key; returns it."""
    stack.overrides["KYCFLOW_MASTER_KEY"] = text = key_text()
    return MasterKeys.parse(text, "test")


def settings(stack: KafkaStack) -> KafkaSettings:
    found = KafkaSettings.from_config(stack.env)
    assert found is not None
    return found


def start_worker(stack: KafkaStack) -> None:
    """`kycflow worker`, given the deployment's master key as an operator gives it."""
    stack.start_worker()


def person(scan_ref: str, first: str, number: str, dob: str) -> list[samples.Webhook]:
    """An iDenfy lifecycle whose body names a person of its own."""
    webhooks = [
        samples.idenfy_identification("IDENTIFICATION_AUTO_FINISHED", scan_ref, final=False),
        samples.idenfy_identification("IDENTIFICATION_MANUAL_FINISHED", scan_ref, manual=True),
    ]
    swap = {b"JOHN": first.encode(), b"AB123456": number.encode(), b"1990-01-01": dob.encode()}
    result = []
    for provider, headers, body in webhooks:
        for old, new in swap.items():
            body = body.replace(old, new)
        result.append((provider, headers, body))
    return result


def envelopes(webhooks: list[samples.Webhook]) -> list[RawEnvelope]:
    """Received now, as ingest stamps them (readers wait for a young record's key)."""
    start = datetime.now(UTC)
    return [
        RawEnvelope.receive(
            provider,
            body,
            headers,
            (start + timedelta(milliseconds=i)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        )
        for i, (provider, headers, body) in enumerate(webhooks)
    ]


def append_sealed(stack: KafkaStack, master: MasterKeys, items: list[RawEnvelope]) -> list[Receipt]:
    """Append through ingest's Kafka appender, sealing as the HTTP workers do."""
    from ingest.kafka_log import KafkaAppender

    async def append() -> list[Receipt]:
        appender = KafkaAppender(
            [stack.broker.bootstrap], f"{stack.name}.raw", timeout=30.0, master=master
        )
        try:
            return await appender.append_all(items)
        finally:
            await appender.close()

    return asyncio.run(append())


def topic_bytes(stack: KafkaStack) -> dict[str, bytes]:
    """Every record (keys and values) of every topic of the deployment, by topic; the
    Faust changelog and any topic the worker made included."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=stack.broker.bootstrap, enable_auto_commit=False)
    try:
        topics = [t for t in consumer.topics() if t.startswith(stack.name)]
        found: dict[str, bytes] = {}
        for topic in topics:
            partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
            consumer.assign(partitions)
            consumer.seek_to_beginning(*partitions)
            ends = consumer.end_offsets(partitions)
            chunks: list[bytes] = []
            deadline = time.monotonic() + 30
            while any(consumer.position(tp) < end for tp, end in ends.items()):
                assert time.monotonic() < deadline, f"could not read {topic}"
                polled: Any = consumer.poll(timeout_ms=200)
                for messages in polled.values():
                    chunks += [m.key or b"" for m in messages] + [m.value or b"" for m in messages]
            found[topic] = b"\n".join(chunks)
        return found
    finally:
        consumer.close()
