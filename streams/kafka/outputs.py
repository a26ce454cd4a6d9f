"""The worker's output producer: records grouped into one Kafka batch per partition.

Producing record by record (`send`) costs a future, a partitioner call and an accumulator
append per record — a fifth of a worker's time. A worker publishes a whole fold batch at
once, so it builds the batches itself (aiokafka's `create_batch`/`send_batch`) and awaits
one acknowledgement per partition. Partitions follow Kafka's default partitioner (murmur2
of the key), so a subject's records land where any Kafka client would put them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

BATCH_BYTES = 512 * 1024


class OutputProducer:
    def __init__(self, servers: list[str]) -> None:
        self.servers = servers
        self.producer: AIOKafkaProducer | None = None
        self.partitions: dict[str, list[int]] = {}
        self.partitioner = DefaultPartitioner()

    async def publish(self, records: Sequence[tuple[str, bytes, bytes]]) -> None:
        """Send (topic, key, value) records; returns once the broker acknowledged all."""
        producer = await self._started()
        batches: dict[tuple[str, int], Any] = {}
        sent = []
        for topic, key, value in records:
            partition = await self._partition(producer, topic, key)
            batch = batches.get((topic, partition))
            if batch is None:
                batch = batches[(topic, partition)] = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None) is None:  # full: send it
                sent.append(await producer.send_batch(batch, topic, partition=partition))
                batch = batches[(topic, partition)] = producer.create_batch()
                batch.append(key=key, value=value, timestamp=None)
        for (topic, partition), batch in batches.items():
            sent.append(await producer.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*sent)

    async def _partition(self, producer: AIOKafkaProducer, topic: str, key: bytes) -> int:
        partitions = self.partitions.get(topic)
        if partitions is None:
            partitions = self.partitions[topic] = sorted(await producer.partitions_for(topic))
        return int(self.partitioner(key, partitions, partitions))

    async def _started(self) -> AIOKafkaProducer:
        if self.producer is None:
            producer = AIOKafkaProducer(
                bootstrap_servers=self.servers,
                client_id="kycflow-worker-outputs",
                acks="all",
                max_batch_size=BATCH_BYTES,
            )
            await producer.start()
            self.producer = producer
        return self.producer

    async def stop(self) -> None:
        if self.producer is not None:
            producer, self.producer = self.producer, None
            await producer.stop()
