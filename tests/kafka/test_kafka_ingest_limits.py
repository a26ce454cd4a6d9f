"""Kafka-mode ingest and record size (issue 9 §2): a webhook within KYCFLOW_MAX_BODY is
stored, and a record Kafka refuses for its size is a 4xx, never a 503 the provider would
retry forever."""

from __future__ import annotations

import asyncio
import json

import pytest

from ingest.kafka_log import KafkaAppender, record_of
from ingest.settings import record_limit
from ingest.writer import RecordTooLarge
from statemachines.envelope import RawEnvelope
from tests.e2e.service import signed
from tests.kafka.stack import KafkaStack, raw_records
from tests.kafka.test_kafka_mode import opened


def test_a_body_just_under_the_limit_is_accepted_in_kafka_mode(stack: KafkaStack) -> None:
    # 900 KB of body is a 1.2 MB record once base64-encoded: over aiokafka's 1 MiB default.
    body = json.dumps(
        {"event": "Finished Journey", "body": {"eventId": "big"}, "note": "x" * 900_000}
    )
    service = stack.serve()
    status, _, answer = service.request(
        "POST", "/webhooks/idwise", body.encode(), signed("idwise", body.encode())
    )
    assert status == 202, answer
    offset = json.loads(answer)["offset"]
    stored = raw_records(stack)[offset]
    assert body.encode()[:1000] not in stored, "sealed at rest"
    assert opened(stack, [(offset, stored)])[0].body == body.encode()


def test_a_record_over_the_producer_limit_is_refused_as_too_large_not_unavailable(
    stack: KafkaStack,
) -> None:
    env = RawEnvelope.receive("idwise", b"x" * 5000, [], "2026-11-22T12:00:00Z")

    async def append() -> None:
        appender = KafkaAppender([stack.broker.bootstrap], f"{stack.name}.raw", max_record=2000)
        try:
            with pytest.raises(RecordTooLarge):
                await appender.append(env)
            small = RawEnvelope.receive("idwise", b"{}", [], "2026-11-22T12:00:00Z")
            assert (await appender.append(small)).offset >= 0  # the appender still works
        finally:
            await appender.close()

    asyncio.run(append())


def test_the_record_limit_fits_the_largest_accepted_body() -> None:
    body = b"\xff" * 1024 * 1024
    kept = {name: "\u0390" * 1024 for name in ("user-agent", "x-request-id", "content-type")}
    env = RawEnvelope("idwise", body, kept, "2026-11-22T12:00:00Z", "k" * 512, "0" * 64)
    key, value = record_of(env)
    assert len(key) + len(value) < record_limit(len(body))
