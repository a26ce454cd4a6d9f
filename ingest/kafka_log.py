"""Kafka mode's raw log: each HTTP worker appends to `kycflow.raw` with its own producer.

A record is keyed by the subject (`statemachines.routing`), and the producer's default
partitioner (murmur2 of the key, as every Kafka client) puts one subject's deliveries on one
partition, so one worker folds them — no `group_by` hop. The value is the envelope JSON.

`acks="all"` with an idempotent producer: the record is on every in-sync replica, and a
producer retry cannot write it twice. A request is answered only after its record was
acknowledged; anything short of that — broker down or hung, metadata unknown, the produce
timeout — raises `WriterUnavailable`, which the HTTP worker turns into 503: the provider
retries, and a record that was written after all is a duplicate the worker's dedup absorbs.
Never a 2xx for an unwritten webhook. A producer that failed is replaced for later requests
(a broker that came back empty refuses the old producer id).

Why aiokafka in the HTTP worker's own event loop, not one writer process as in embedded
mode: Kafka needs no single writer (dedup happens in the worker), and the acknowledgement
then reaches the request without a thread or process hand-off. Measured here at 64
connections: 9.7k webhooks/s, against 6.7k for a kafka-python producer in a writer process
(README, Performance). Its idempotent mode needs `ingest.aiokafka_compat` to start on Tansu.

With a master key, bodies and kept headers are sealed under a data key of this worker's
for the subject (`ingest.kafka_keys`). A new key's record is sent with the first raw record
under it and the request waits for both acknowledgements: one round trip, not two (readers
wait for a young record's key, `ingest.kafka_keys`). A worker reuses a key for at most
`KEY_REUSE` seconds (`ingest.kafka_keys`) after making it, and the key record says when
that was: an erasure waits until every key of the subject it destroys is past that, and a
produce timeout more, so no delivery accepted under it comes after its reduction
(`streams.erasure.kafka`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ingest import aiokafka_compat, sealing
from ingest.appending import Receipt
from ingest.kafka_keys import KEY_REUSE, key_record, sealed_value
from ingest.sealing import MasterKeys
from ingest.settings import record_limit
from ingest.writer import RecordTooLarge, WriterUnavailable
from statemachines.envelope import RawEnvelope, envelope_to_json
from statemachines.routing import position, routing_key

log = logging.getLogger("kycflow.ingest")
_KEYS_CACHED = 100_000  # bounded: one entry per recently active subject


def record_of(env: RawEnvelope) -> tuple[bytes, bytes]:
    """The raw topic's key and value for an envelope."""
    return routing_key(env), envelope_to_json(env)


class KafkaAppender:
    """Appends envelopes to the raw topic; one per HTTP worker (or tool), in its loop."""

    def __init__(
        self,
        servers: list[str],
        topic: str,
        *,
        linger_ms: int = 1,
        timeout: float = 5.0,
        max_record: int = record_limit(1024 * 1024),
        master: MasterKeys | None = None,
        keys_topic: str | None = None,
    ) -> None:
        aiokafka_compat.install()
        self.servers, self.topic = servers, topic
        self.master = master  # None: records in the clear (KYCFLOW_ENCRYPTION=off)
        self.keys_topic = keys_topic or topic.removesuffix(".raw") + ".keys"
        self.keys: dict[str, tuple[float, str, AESGCM]] = {}  # subject -> (until, id, key)
        self.linger_ms, self.timeout = linger_ms, timeout
        self.max_record = max_record
        self.producer: AIOKafkaProducer | None = None
        self.starting = asyncio.Lock()
        self.retiring: set[asyncio.Task[None]] = set()

    async def append(self, env: RawEnvelope) -> Receipt:
        """The ingest `Appender`: returns once the broker acknowledged the record."""
        key = routing_key(env)
        producer, value = self.producer, b""
        try:
            async with asyncio.timeout(self.timeout):
                if producer is None:
                    producer = await self._started()
                value, key_sent = await self._value(producer, key, env)
                sent = await producer.send(self.topic, value, key=key)
                ack, *_ = await asyncio.gather(sent, *key_sent)
        except MessageSizeTooLargeError:
            raise self._too_large(producer, len(value)) from None
        except Exception as exc:  # any other failure is a 503, never a 500 or a 2xx
            raise self._failed(producer, exc) from None
        # No global view at ingest: the worker detects and annotates repeats.
        return Receipt(position(ack.partition, ack.offset), False)

    async def append_all(self, envelopes: Sequence[RawEnvelope]) -> list[Receipt]:
        """Append in order (tools and tests); all acknowledged within the timeout, or
        `WriterUnavailable`."""
        producer = None
        try:
            async with asyncio.timeout(self.timeout):
                producer = await self._started()
                sent, keys_sent = [], []
                for env in envelopes:
                    key = routing_key(env)
                    value, key_sent = await self._value(producer, key, env)
                    keys_sent += key_sent
                    sent.append(await producer.send(self.topic, value, key=key))
                acks = await asyncio.gather(*sent)
                await asyncio.gather(*keys_sent)
        except MessageSizeTooLargeError:
            raise self._too_large(producer, 0) from None
        except Exception as exc:
            raise self._failed(producer, exc) from None
        return [Receipt(position(ack.partition, ack.offset), False) for ack in acks]

    async def _value(
        self, producer: AIOKafkaProducer, key: bytes, env: RawEnvelope
    ) -> tuple[bytes, list[asyncio.Future[Any]]]:
        """The record's value, and the acknowledgement of a new key's record (if one was
        sent for it), which must come before the request is answered."""
        if self.master is None:
            return envelope_to_json(env), []
        subject = key.decode("utf-8", "surrogatepass")
        now = time.monotonic()
        found = self.keys.get(subject)
        if found is not None and found[0] > now:
            return sealed_value(env, found[1], found[2]), []
        # Two requests that both find none make two keys: harmless (readers take any
        # number per subject), and cheaper than making one wait for the other.
        key_id, raw = secrets.token_hex(8), sealing.new_data_key()
        wrapped = self.master.wrap(subject, raw)
        record_key, record = key_record(subject, key_id, *wrapped, created=time.time())
        key_sent = await producer.send(self.keys_topic, record, key=record_key)
        if len(self.keys) >= _KEYS_CACHED:
            self.keys.clear()
        self.keys[subject] = (now + KEY_REUSE, key_id, AESGCM(raw))
        return sealed_value(env, key_id, self.keys[subject][2]), [key_sent]

    def _failed(self, producer: AIOKafkaProducer | None, exc: Exception) -> WriterUnavailable:
        log.warning("kafka did not acknowledge: %s", type(exc).__name__)
        self._retire(producer)
        return WriterUnavailable(f"kafka did not acknowledge ({type(exc).__name__})")

    def _too_large(self, producer: AIOKafkaProducer | None, size: int) -> RecordTooLarge:
        # Retrying cannot help, so not a 503. Past our own limit (sized from KYCFLOW_MAX_BODY)
        # only a broker or topic limit refuses it: the operator must raise max.message.bytes.
        log.warning(
            "kafka refused a %d-byte record as too large; the raw topic's max.message.bytes "
            "must be at least %d for KYCFLOW_MAX_BODY",
            size,
            self.max_record,
        )
        self._retire(producer)  # a refused batch can leave an idempotent producer out of step
        return RecordTooLarge("webhook too large for the Kafka log")

    async def _started(self) -> AIOKafkaProducer:
        async with self.starting:
            if self.producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=self.servers,
                    client_id="kycflow-ingest",
                    acks="all",
                    enable_idempotence=True,
                    linger_ms=self.linger_ms,
                    request_timeout_ms=int(self.timeout * 1000),
                    max_request_size=self.max_record,
                )
                try:
                    await producer.start()
                except BaseException:
                    self._retire(producer, current=False)
                    raise
                self.producer = producer
            return self.producer

    def _retire(self, producer: AIOKafkaProducer | None, *, current: bool = True) -> None:
        """Stop a failed producer in the background; later requests start a new one."""
        if producer is None or (current and producer is not self.producer):
            return  # another request already replaced it
        if current:
            self.producer = None
        task = asyncio.ensure_future(self._stop(producer))
        self.retiring.add(task)
        task.add_done_callback(self.retiring.discard)

    async def _stop(self, producer: AIOKafkaProducer) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self.timeout):
                await producer.stop()

    async def close(self) -> None:
        if self.producer is not None:
            await self._stop(self.producer)
            self.producer = None
        await asyncio.gather(*self.retiring)
