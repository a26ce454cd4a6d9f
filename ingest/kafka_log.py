"""Kafka mode's raw log: the writer process appends to `kycflow.raw` instead of SQLite.

The HTTP workers hand envelopes to the one writer process exactly as in embedded mode
(`ingest.writer`); here a batch is produced to Kafka and each request is answered once the
broker acknowledged its record. `acks="all"` with kafka-python's idempotent producer: the
record is on every in-sync replica, and a producer retry cannot write it twice. (aiokafka's
idempotent producer fails against Tansu, the broker the tests run.) One producer for the
whole service makes the batches large — the Kafka analogue of group commit: requests that
arrive while a batch waits for its acknowledgement form the next one.

The HTTP workers do the per-record work — the routing key (the core's normaliser), the
record value and its partition (Kafka's default murmur2 partitioner, so any client agrees)
— and the frame carries just those: the single writer process only hands records to the
producer, which keeps it from being the bottleneck.

Anything short of an acknowledgement — broker down, metadata unknown, timeout — answers
that request with offset -1, which the HTTP worker turns into 503: the provider retries,
and a record that was written after all is a duplicate the worker's dedup absorbs. Never a
2xx for an unwritten webhook. A producer that failed is replaced for the next batch (one
that hit a fatal error stays broken: seen when a broker came back empty).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import threading
import time
from collections.abc import Sequence
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError
from kafka.partitioner.default import murmur2

from ingest.rawlog import Receipt
from statemachines.envelope import RawEnvelope, envelope_to_json
from statemachines.routing import position, routing_key

log = logging.getLogger("kycflow.writer")
FAILED = Receipt(-1, False)


# --- frames: HTTP worker -> writer -------------------------------------------------------------
Record = tuple[int | None, bytes, bytes]  # partition (None: the producer picks), key, value
_HEAD = struct.Struct(">IIiH")  # length, request id, partition (-1: none), key length


def record_of(env: RawEnvelope, partitions: int | None) -> Record:
    """What goes to the raw topic for an envelope; the partition is Kafka's default
    (murmur2 of the key) when the topic's partition count is known."""
    key = routing_key(env)
    partition = (murmur2(key) & 0x7FFFFFFF) % partitions if partitions else None
    return partition, key, envelope_to_json(env)


def encode_record_request(request_id: int, env: RawEnvelope, partitions: int | None) -> bytes:
    partition, key, value = record_of(env, partitions)
    length = _HEAD.size - 4 + len(key) + len(value)
    head = _HEAD.pack(length, request_id, -1 if partition is None else partition, len(key))
    return head + key + value


def decode_record_request(frame: bytes) -> tuple[int, Record]:
    """A frame without its length prefix, as (request id, record)."""
    request_id, partition, key_length = struct.unpack_from(">IiH", frame)
    start = _HEAD.size - 4
    key = frame[start : start + key_length]
    return request_id, (None if partition < 0 else partition, key, frame[start + key_length :])


class KafkaRawLog:
    overlap = True  # batches are pipelined: one is sent while others await their acks

    def __init__(
        self, servers: list[str], topic: str, *, linger_ms: int = 1, timeout: float = 5.0
    ) -> None:
        self.servers, self.topic = servers, topic
        self.linger_ms, self.timeout = linger_ms, timeout
        self.producer: Any = None
        self.connecting = asyncio.Lock()

    def append(self, envelopes: Sequence[RawEnvelope]) -> list[Receipt]:
        """Append and wait for the acknowledgements (blocking; tools and tests)."""
        records = [record_of(env, None) for env in envelopes]
        return self._checked(_settle(self._send(records), self.timeout))

    decode = staticmethod(decode_record_request)

    async def append_rows(self, rows: Sequence[Record]) -> list[Receipt]:
        """The writer's interface (`ingest.writer.WriterServer`): sent from the loop, and
        answered when the producer's thread has settled every record — meanwhile the loop
        sends the next batch (batches pipeline, as the producer allows)."""
        loop = asyncio.get_running_loop()
        if self.producer is None:  # connecting blocks: never on the loop
            async with self.connecting:
                await loop.run_in_executor(None, self._producer)
        sent = self._send(rows)
        settled = _Settled(len(sent), loop)
        for index, future in enumerate(sent):
            if future is None:
                settled.set(index, FAILED)
            else:
                future.add_callback(lambda meta, i=index: settled.set(i, _receipt_of(meta)))
                future.add_errback(lambda _exc, i=index: settled.set(i, FAILED))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(settled.all), self.timeout)
        return self._checked(list(settled.receipts))  # unsettled ones stay FAILED

    def _send(self, records: Sequence[Record]) -> list[Any]:
        """A future per record; None for one that could not even be queued."""
        producer = self._producer()
        if producer is None:
            return [None] * len(records)
        sent = []
        for partition, key, value in records:
            try:
                sent.append(producer.send(self.topic, value, key=key, partition=partition))
            except KafkaError:  # buffer full for max_block_ms, producer closed …
                sent.append(None)
        return sent

    def _checked(self, receipts: list[Receipt]) -> list[Receipt]:
        if FAILED in receipts:
            log.warning("kafka did not acknowledge %d of %d", receipts.count(FAILED), len(receipts))
            self._discard()
        return receipts

    def _producer(self) -> Any:
        if self.producer is None:
            timeout_ms = int(self.timeout * 1000)
            try:
                self.producer = KafkaProducer(
                    bootstrap_servers=self.servers,
                    client_id="kycflow-ingest",
                    acks="all",
                    enable_idempotence=True,
                    linger_ms=self.linger_ms,
                    max_block_ms=timeout_ms,
                    request_timeout_ms=max(timeout_ms - self.linger_ms - 1, 100),
                    delivery_timeout_ms=timeout_ms,
                    bootstrap_timeout_ms=timeout_ms,
                )
                self.producer.partitions_for(self.topic)  # metadata now, not per batch
            except KafkaError as exc:
                log.warning("kafka unavailable: %s", type(exc).__name__)
                self._discard()
        return self.producer

    def _discard(self) -> None:
        producer, self.producer = self.producer, None
        if producer is not None:
            producer.close(timeout=0)

    def close(self) -> None:
        if self.producer is not None:
            self.producer.close(timeout=2)
            self.producer = None


class _Settled:
    """Receipts filled in by the producer's I/O thread; the loop is woken once, at the end."""

    def __init__(self, count: int, loop: asyncio.AbstractEventLoop) -> None:
        self.receipts, self.left, self.loop = [FAILED] * count, count, loop
        self.lock = threading.Lock()
        self.all: asyncio.Future[None] = loop.create_future()
        if count == 0:
            self.all.set_result(None)

    def set(self, index: int, receipt: Receipt) -> None:
        with self.lock:
            self.receipts[index] = receipt
            self.left -= 1
            finished = self.left == 0
        if finished:
            self.loop.call_soon_threadsafe(_resolve, self.all)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _settle(sent: list[Any], timeout: float) -> list[Receipt]:
    deadline = time.monotonic() + timeout
    return [_receipt(future, deadline) if future is not None else FAILED for future in sent]


def _receipt(future: Any, deadline: float) -> Receipt:
    try:
        meta = future.get(timeout=max(deadline - time.monotonic(), 0.001))
    except (KafkaError, TimeoutError):
        return FAILED
    return _receipt_of(meta)


def _receipt_of(meta: Any) -> Receipt:
    # No global view at ingest: the worker detects and annotates repeats.
    return Receipt(position(meta.partition, meta.offset), False)
