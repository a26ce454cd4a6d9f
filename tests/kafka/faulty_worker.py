"""`kycflow worker` with a fault injected from inside, to provoke a stall (tests only).

    python -m tests.kafka.faulty_worker skip|pause|stuck

- skip: when raw partitions are first assigned, the lowest one is moved to its end without
  delivering anything, in a group with no committed offset: exactly what the Faust bug
  of issue 14 left behind (records handed over and dropped, no commit to go back to).
- pause: once the worker is ready, its raw partitions are paused in Faust's bookkeeping,
  as a recovery that never resumes them would leave them.
- stuck: resuming raw partitions has no effect, so they are never fetched and nothing
  in-process can help: the worker must give up and exit non-zero.
Everything else is the real worker (`run_worker`, with the master key), on the real broker.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from streams.config import db_path, load_config
from streams.kafka import transport, worker
from streams.kafka.config import KafkaSettings
from streams.kafka.keys import master_from_env

log = logging.getLogger("kycflow.fault")


def true_ends(settings: KafkaSettings) -> dict[int, int]:
    """Each raw partition's end, from fetches (Tansu's ListOffsets answer is short)."""
    topic = settings.topic("raw")
    consumer = KafkaConsumer(bootstrap_servers=settings.servers, enable_auto_commit=False)
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    for _ in range(20):
        consumer.poll(timeout_ms=200)
        if all(consumer.highwater(tp) is not None for tp in partitions):
            break
    ends = {tp.partition: consumer.highwater(tp) or 0 for tp in partitions}
    consumer.close()
    return ends


def skip(app: Any, settings: KafkaSettings) -> None:
    raw, ends = settings.topic("raw"), true_ends(settings)
    done: list[Any] = []

    async def on_assigned(sender: Any, assigned: Any, **_: Any) -> None:
        tps = sorted(tp for tp in assigned if tp.topic == raw)
        if done or not tps:
            return
        done.append(tps[0])
        thread, tp, end = app.consumer._thread, tps[0], ends[tps[0].partition]

        async def to_end() -> None:
            thread._ensure_consumer().seek(tp, end)

        await thread.call_thread(to_end)
        log.warning("FAULT: moved %s[%d] to its end %d without delivering", *tp, end)

    app.on_partitions_assigned.connect(on_assigned)


def pause(app: Any, settings: KafkaSettings) -> None:
    raw = settings.topic("raw")

    async def pausing() -> None:
        recovery = app.tables.recovery
        while True:
            await asyncio.sleep(0.2)
            tps = {tp for tp in app.consumer.assignment() if tp.topic == raw}
            if tps and recovery.completed.is_set() and not app.rebalancing:
                app.consumer.pause_partitions(tps)
                log.warning("FAULT: paused %s", sorted(tp.partition for tp in tps))
                return

    app.task(pausing)


def stuck(app: Any, settings: KafkaSettings) -> None:
    raw, resume = settings.topic("raw"), transport.Consumer.resume_partitions

    def resume_all_but_raw(self: Any, tps: Any) -> None:
        resume(self, {tp for tp in tps if tp.topic != raw})

    transport.Consumer.resume_partitions = resume_all_but_raw  # type: ignore[method-assign]


def main(fault: str) -> int:
    config = load_config(os.environ)
    settings = KafkaSettings.from_config(config)
    assert settings is not None
    master = master_from_env(config, db_path(config))  # as `kycflow worker` gets it
    build = worker.build_app

    def faulty(settings: KafkaSettings, *args: Any) -> tuple[Any, Any]:
        app, folder = build(settings, *args)
        {"skip": skip, "pause": pause, "stuck": stuck}[fault](app, settings)
        return app, folder

    worker.build_app = faulty  # type: ignore[assignment]
    return worker.run_worker(settings, master=master)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
