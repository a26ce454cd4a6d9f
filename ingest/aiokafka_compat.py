"""Teach aiokafka's idempotent producer InitProducerId v3.

aiokafka (0.14) asks for a producer id with InitProducerId v0 only. v3 (Kafka 2.5+) adds
`producer_id`/`producer_epoch` fields, sent as -1 by a new producer; it is what the Java
client and kafka-python send. Tansu, the broker the tests run, mishandles v0-v2 (it reads
the absent fields as missing and answers UNKNOWN_SERVER_ERROR), so without this aiokafka's
idempotent producer cannot start there. With it, aiokafka picks the highest version the
broker announces — v3 on Kafka 2.5+ and Tansu, v0 on an older broker, as before.

`install()` replaces the one request class aiokafka's sender builds; it refuses loudly if
a future aiokafka no longer has it, rather than silently running non-idempotent.
"""

from __future__ import annotations

from typing import Any

from aiokafka.producer import sender
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.transaction import InitProducerIdRequest_v0
from aiokafka.protocol.types import CompactString, Int16, Int32, Int64, Schema, TaggedFields

NEW_PRODUCER = -1  # producer id and epoch of a producer asking for its first id


class InitProducerIdResponse_v3(Response):  # type: ignore[misc]
    API_KEY = 22
    API_VERSION = 3
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("error_code", Int16),
        ("producer_id", Int64),
        ("producer_epoch", Int16),
        ("tags", TaggedFields),
    )


class InitProducerIdRequest_v3(RequestStruct):  # type: ignore[misc]
    FLEXIBLE_VERSION = True
    API_KEY = 22
    API_VERSION = 3
    RESPONSE_TYPE = InitProducerIdResponse_v3
    SCHEMA = Schema(
        ("transactional_id", CompactString("utf-8")),
        ("transaction_timeout_ms", Int32),
        ("producer_id", Int64),
        ("producer_epoch", Int16),
        ("tags", TaggedFields),
    )


class InitProducerIdRequest(Request[InitProducerIdRequest_v0 | InitProducerIdRequest_v3]):  # type: ignore[misc]
    """Same constructor as aiokafka's; builds v3 when the broker has it, else v0."""

    API_KEY = 22

    def __init__(self, transactional_id: str | None, transaction_timeout_ms: int) -> None:
        self.transactional_id = transactional_id
        self.transaction_timeout_ms = transaction_timeout_ms

    def build(self, request_struct_class: type[Any]) -> Any:
        if request_struct_class.API_VERSION >= 3:
            return request_struct_class(
                self.transactional_id, self.transaction_timeout_ms, NEW_PRODUCER, NEW_PRODUCER, {}
            )
        return request_struct_class(self.transactional_id, self.transaction_timeout_ms)


def install() -> None:
    if not hasattr(sender, "InitProducerIdRequest"):
        raise RuntimeError(
            "this aiokafka no longer builds InitProducerIdRequest in aiokafka.producer.sender; "
            "ingest.aiokafka_compat needs updating"
        )
    sender.InitProducerIdRequest = InitProducerIdRequest
