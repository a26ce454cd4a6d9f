"""Kafka mode's pure pieces: settings from the environment, routing keys, positions."""

from __future__ import annotations

import pytest

from ingest.settings import record_limit
from statemachines import normalise
from statemachines.envelope import UNREADABLE, envelope_from_record, envelope_to_json
from statemachines.events import CanonicalEvent
from statemachines.routing import PARTITION_STRIDE, coordinate, position, routing_key
from streams.kafka.config import KafkaSettings, topic_configs
from tests import payloads as p
from tests.payloads import deliver


def test_kafka_mode_is_off_without_a_bootstrap() -> None:
    assert KafkaSettings.from_config({}) is None
    assert KafkaSettings.from_config({"KYCFLOW_KAFKA_BOOTSTRAP": "  "}) is None


def test_settings_have_defaults_and_name_the_bad_variable() -> None:
    settings = KafkaSettings.from_config({"KYCFLOW_KAFKA_BOOTSTRAP": "a:9092, b:9092"})
    assert settings is not None
    assert settings.servers == ["a:9092", "b:9092"]
    assert (settings.partitions, settings.topic("raw")) == (8, "kycflow.raw")
    with pytest.raises(ValueError, match="KYCFLOW_KAFKA_PARTITIONS"):
        KafkaSettings.from_config({"KYCFLOW_KAFKA_BOOTSTRAP": "a", "KYCFLOW_KAFKA_PARTITIONS": "0"})
    with pytest.raises(ValueError, match="KYCFLOW_KAFKA_SESSION_TIMEOUT"):
        KafkaSettings.from_config(
            {"KYCFLOW_KAFKA_BOOTSTRAP": "a", "KYCFLOW_KAFKA_SESSION_TIMEOUT": "soon"}
        )


def test_topics_the_status_is_compacted_and_the_raw_log_kept() -> None:
    settings = KafkaSettings.from_config(
        {"KYCFLOW_KAFKA_BOOTSTRAP": "a", "KYCFLOW_KAFKA_TOPIC_PREFIX": "acme"}
    )
    assert settings is not None
    configs = topic_configs(settings)
    assert configs["acme.status"]["cleanup.policy"] == "compact"
    assert configs["acme.raw"] == {
        "cleanup.policy": "delete",
        "retention.ms": "-1",
        "max.message.bytes": str(record_limit(1024 * 1024)),
    }
    assert set(configs) == {f"acme.{s}" for s in ("raw", "status", "transitions",
                                                  "annotations", "quarantine", "keys",
                                                  "reduced", "audit")}  # fmt: skip
    # Data keys and reduced events: the latest per key matters, a tombstone erases.
    assert configs["acme.keys"]["cleanup.policy"] == "compact"
    assert configs["acme.reduced"]["cleanup.policy"] == "compact"
    # The audit trail of erasures: never compacted or expired.
    assert configs["acme.audit"] == {"cleanup.policy": "delete", "retention.ms": "-1"}


def test_the_raw_topic_takes_the_largest_record_ingest_may_append() -> None:
    """A broker's default (~1 MB) is below a 1 MiB body once base64-encoded: each webhook
    over ~780 KB would be refused (413) on a real Kafka broker."""
    settings = KafkaSettings.from_config(
        {"KYCFLOW_KAFKA_BOOTSTRAP": "a", "KYCFLOW_MAX_BODY": str(10 * 1024 * 1024)}
    )
    assert settings is not None
    limit = int(topic_configs(settings)["kycflow.raw"]["max.message.bytes"])
    assert limit == record_limit(10 * 1024 * 1024) > 4 * 10 * 1024 * 1024 // 3


def test_positions_name_partition_and_offset_in_one_integer() -> None:
    assert position(3, 1234) == 3_000_000_001_234
    assert coordinate(position(7, 0)) == (7, 0)
    assert coordinate(position(0, PARTITION_STRIDE - 1)) == (0, PARTITION_STRIDE - 1)
    with pytest.raises(ValueError):
        position(1, PARTITION_STRIDE)


def test_every_event_of_a_subject_has_the_subjects_routing_key() -> None:
    lifecycle = [
        p.ondato_kyc("Created", "idv-1", webhook_id="w1"),
        p.ondato_idv("Completed", "idv-1", webhook_id="w2"),
        p.ondato_kyc("Approved", "idv-1", webhook_id="w3"),
    ]
    for offset, webhook in enumerate(lifecycle):
        env = deliver(webhook, offset)
        event = normalise(env)
        assert isinstance(event, CanonicalEvent)
        assert routing_key(env) == b"ondato/kyc/idv-1" == event.subject.key.encode()


def test_an_unreadable_body_is_routed_by_its_dedup_key() -> None:
    env = deliver(("ondato", {}, b"not json"), 1)
    assert routing_key(env) == env.dedup_key.encode()


def test_a_record_that_is_not_an_envelope_is_quarantined_not_fatal() -> None:
    env = envelope_from_record(b"\x00garbage", 42)
    assert (env.provider, env.offset, env.body) == (UNREADABLE, 42, b"\x00garbage")
    assert "not a kycflow raw envelope" in normalise(env).reason  # type: ignore[union-attr]
    good = deliver(p.idwise("Finished Step", event_id="e1"), 5)
    assert envelope_from_record(envelope_to_json(good), 5) == good


def test_a_raw_record_is_keyed_by_subject_and_carries_the_envelope() -> None:
    from ingest.kafka_log import record_of

    env = deliver(p.idwise("Finished Journey", event_id="e9", journey="j-9"), 3)
    assert record_of(env) == (routing_key(env), envelope_to_json(env))


def test_the_idempotent_producer_asks_for_its_id_with_v3_where_the_broker_has_it() -> None:
    from io import BytesIO

    from ingest import aiokafka_compat
    from ingest.aiokafka_compat import InitProducerIdRequest

    request = InitProducerIdRequest(None, 60_000)
    v3 = request.prepare({22: (0, 5)})  # Kafka 2.5+, Tansu
    assert (v3.API_VERSION, v3.producer_id, v3.producer_epoch) == (3, -1, -1)
    assert type(v3).decode(BytesIO(v3.encode())).to_object() == v3.to_object()
    assert request.prepare({22: (0, 2)}).API_VERSION == 0  # an older broker: as aiokafka did
    aiokafka_compat.install()
    from aiokafka.producer import sender

    assert sender.InitProducerIdRequest is InitProducerIdRequest
