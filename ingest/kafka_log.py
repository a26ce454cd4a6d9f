"""Kafka mode's appender: each accepted webhook goes to `kycflow.raw` before the 202.

`acks="all"` with the idempotent producer: the broker has the record on every in-sync
replica before we answer, and a producer retry cannot write it twice. kafka-python's
producer (its own I/O thread; aiokafka's idempotent producer fails against Tansu) is
bridged to the event loop: the send is queued from the loop, the acknowledgement comes
back through `call_soon_threadsafe`. Requests arriving together share the producer's
batches (`linger_ms`), the Kafka analogue of the embedded writer's group commit.

Anything short of an acknowledgement — broker down, metadata unknown, timeout — is
`WriterUnavailable`, which ingest answers with 503: the provider retries, and a record
that was written after all is a duplicate the worker's dedup absorbs. Never a 2xx for an
unwritten webhook.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError

from ingest.rawlog import Receipt
from ingest.writer import WriterUnavailable
from statemachines.envelope import RawEnvelope, envelope_to_json
from statemachines.routing import position, routing_key

log = logging.getLogger("kycflow.ingest")


class KafkaAppender:
    def __init__(
        self, servers: list[str], topic: str, *, linger_ms: int = 1, timeout: float = 5.0
    ) -> None:
        self.servers, self.topic = servers, topic
        self.linger_ms, self.timeout = linger_ms, timeout
        self.producer: KafkaProducer | None = None
        self.starting = asyncio.Lock()
        self.fresh_until = 0.0

    async def append(self, env: RawEnvelope) -> Receipt:
        loop = asyncio.get_running_loop()
        acked: asyncio.Future[Any] = loop.create_future()
        producer = None
        try:
            async with asyncio.timeout(self.timeout):
                producer = await self._producer()
                sent = producer.send(self.topic, envelope_to_json(env), key=routing_key(env))
                sent.add_callback(lambda meta: loop.call_soon_threadsafe(_settle, acked, meta))
                sent.add_errback(lambda exc: loop.call_soon_threadsafe(_fail, acked, exc))
                meta = await acked
        except (KafkaError, TimeoutError, OSError) as exc:
            self._replace(producer)
            raise WriterUnavailable(f"kafka did not acknowledge: {type(exc).__name__}") from exc
        # Kafka mode has no global view at ingest: dedup happens in the worker, which
        # annotates the repeat; the receipt cannot say "duplicate" here.
        return Receipt(position(meta.partition, meta.offset), False)

    async def _producer(self) -> KafkaProducer:
        async with self.starting:
            if self.producer is None:
                # Connecting blocks: done in a thread, once, so the loop keeps serving.
                self.producer = await asyncio.get_running_loop().run_in_executor(None, self._new)
                self.fresh_until = time.monotonic() + 1.0  # one replacement a second at most
            return self.producer

    def _new(self) -> KafkaProducer:
        timeout_ms = int(self.timeout * 1000)
        producer = KafkaProducer(
            bootstrap_servers=self.servers,
            client_id="kycflow-ingest",
            acks="all",
            enable_idempotence=True,
            linger_ms=self.linger_ms,
            # A send never blocks the loop for long: metadata is fetched here, and the
            # buffer only fills during an outage, when a quick 503 is the right answer.
            max_block_ms=250,
            request_timeout_ms=max(timeout_ms - self.linger_ms - 1, 100),
            delivery_timeout_ms=timeout_ms,
            bootstrap_timeout_ms=timeout_ms,
        )
        producer.partitions_for(self.topic)  # metadata now, not on a request's path
        return producer

    def _replace(self, failed: KafkaProducer | None) -> None:
        """After a failure the next request gets a new producer: one that hit a fatal
        error stays broken (seen when a broker came back empty and refused the old
        producer id). In-flight sends of the old one fail, so they answer 503 too."""
        if failed is None or time.monotonic() < self.fresh_until:
            return
        close = failed.close
        if failed is self.producer:
            self.producer = None
            asyncio.get_running_loop().run_in_executor(None, close, 0)

    async def close(self) -> None:
        if self.producer is not None:
            producer, self.producer = self.producer, None
            await asyncio.get_running_loop().run_in_executor(None, producer.close, 2)


def _settle(acked: asyncio.Future[Any], meta: Any) -> None:
    if not acked.done():
        acked.set_result(meta)


def _fail(acked: asyncio.Future[Any], exc: BaseException) -> None:
    if not acked.done():
        acked.set_exception(exc)
