"""The audit trail's entries (`streams.erasure.audit`): the embedded table and the Kafka
record carry the same fields, and a Kafka write the broker does not acknowledge is
AuditFailed — a one-line operator error naming the entry — never a silent pass."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from kafka.errors import KafkaTimeoutError

from streams.config import KycflowError
from streams.erasure import audit
from streams.kafka.config import KafkaSettings

ENTRY = audit.Entry("2026-01-02T03:04:05.000006Z", "erase", "cli", ("idenfy/kyc/s1",), 3, 2)


def test_the_table_and_the_record_carry_the_same_entry(tmp_path: Path) -> None:
    raw = tmp_path / "kycflow.raw.db"
    assert audit.from_raw_log(raw) == []  # no raw log yet
    with contextlib.closing(sqlite3.connect(raw)) as db:
        db.execute("CREATE TABLE raw_log (x)")
        db.commit()
        assert audit.from_raw_log(raw) == []  # no erasure has made the table yet
        db.executescript(audit.SCHEMA)
        audit.insert(db.cursor(), ENTRY)
        db.commit()
    assert audit.from_raw_log(raw) == [ENTRY]
    record = json.loads(json.dumps(ENTRY.as_json()))
    assert set(record) == {"at", "action", "by", "subjects", "deliveries", "keys"}
    assert audit.Entry.from_json(record) == ENTRY


class _Unacknowledged:
    """What kafka-python's future does when the broker never answers."""

    def get(self, timeout: float) -> Any:
        raise KafkaTimeoutError("Timeout after waiting for 30000 secs.")


class _Producer:
    def send(self, topic: str, value: bytes) -> _Unacknowledged:
        self.sent = (topic, value)
        return _Unacknowledged()


def test_an_unacknowledged_kafka_entry_fails_the_command_and_names_the_entry() -> None:
    settings = KafkaSettings.from_config(
        {"KYCFLOW_KAFKA_BOOTSTRAP": "b:9092", "KYCFLOW_KAFKA_TOPIC_PREFIX": "acme"}
    )
    assert settings is not None
    producer = _Producer()
    with pytest.raises(audit.AuditFailed) as failed:
        audit.produce(producer, settings, ENTRY)
    assert producer.sent[0] == "acme.audit"
    assert isinstance(failed.value, KycflowError) and failed.value.entry == ENTRY
    message = str(failed.value)
    assert "\n" not in message and "acme.audit" in message
    assert json.loads(message[message.index("{") :]) == ENTRY.as_json()
