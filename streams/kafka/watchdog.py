"""A worker's watch over its raw partitions: lag, last progress, and what to do on a stall.

Every second it compares each assigned raw partition's next offset to fold (the Folder's
stored position) with the partition's end (the fetch high watermark, and every few seconds
the broker's end offsets). A partition with records to fold whose position has not moved
for `KYCFLOW_KAFKA_STALL_TIMEOUT` seconds has stalled (table recovery that advances counts
as progress). The watchdog then, once:
- logs a warning naming the partitions, and
- re-seeks them: resumes them in Faust's bookkeeping and moves the consumer back to the
  stored position, so whatever was skipped is fetched and folded again (repeats are
  harmless: the Folder skips what it stored).
If they are still stalled one timeout later it logs an error and stops the worker, which
exits with `EXIT_STALLED` for its supervisor to restart it (a hard exit follows if the
graceful stop hangs). The state is published on the worker's `/metrics` and `/healthz`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
from typing import Any

from faust.types import TP

from streams.kafka.config import KafkaSettings
from streams.kafka.progress import Key, Progress, scalar
from streams.kafka.status import Snapshot, StatusServer

log = logging.getLogger("kycflow.worker")
EXIT_STALLED = 75  # EX_TEMPFAIL: a temporary failure, restarting is the cure
PROBE_EVERY = 5.0  # seconds between end-offset requests to the broker
HARD_EXIT_AFTER = 30.0  # seconds a graceful stop may take after giving up


class Watchdog:
    def __init__(
        self, app: Any, folder: Any, settings: KafkaSettings, status: StatusServer | None
    ) -> None:
        self.app, self.folder, self.status = app, folder, status
        self.raw = settings.topic("raw")
        self.progress = Progress(settings.stall_timeout)
        self.healed_at: float | None = None  # when this stall episode's re-seek ran
        self.heals = 0
        self.gave_up = False
        self.ends: dict[int, int] = {}  # partition -> end offset from the broker
        self.rewinding: asyncio.Future[None] | None = None
        self.recovered = -1  # table recovery position, to see it advance

    async def run(self) -> None:
        probing = asyncio.ensure_future(self._probe())
        try:
            while not self.app.should_stop and not self.gave_up:
                await asyncio.sleep(1.0)
                try:
                    self.check()
                except Exception:  # a watchdog that dies would hide the stalls it is for
                    log.exception("stall watchdog check failed; trying again in a second")
        finally:
            probing.cancel()

    def check(self) -> None:
        """One round; never waits on the consumer, so health stays current."""
        now, wall = time.monotonic(), time.time()
        assigned = self._assigned()
        self.progress.assign(((self.raw, tp.partition) for tp in assigned), now, wall)
        consumer = self.app.consumer
        for tp in assigned:
            end = max(self.ends.get(tp.partition, 0), _highwater(consumer, tp))
            next_offset = self.folder.next_offset(tp.partition)
            self.progress.observe((self.raw, tp.partition), now, wall, next=next_offset, end=end)
        if self._recovering():
            self.progress.touch(now, wall)
        stalled = self.progress.stalled(now)
        self._publish(now, stalled)
        if not stalled:
            self.healed_at = None
        elif self.healed_at is None:
            self.healed_at = now
            self.heal(stalled, now)
        elif now - self.healed_at >= self.progress.timeout:
            self.give_up(stalled, now)

    def _assigned(self) -> list[TP]:
        try:
            assignment = self.app.consumer.assignment()
        except Exception:  # not started yet
            return []
        return sorted(tp for tp in assignment if tp.topic == self.raw)

    async def _probe(self) -> None:
        """Every few seconds, the broker's end offsets of the assigned raw partitions."""
        while True:
            await asyncio.sleep(PROBE_EVERY)
            assigned = self._assigned()
            if not assigned:
                continue
            try:
                ends = await asyncio.wait_for(self.app.consumer.highwaters(*assigned), 10.0)
            except Exception as exc:  # broker away or rebalancing: keep the last answer
                log.debug("end offsets unavailable: %r", exc)
                continue
            self.ends = {tp.partition: int(end) for tp, end in ends.items() if end is not None}

    def _recovering(self) -> bool:
        """True while table recovery advances: that is progress too."""
        recovery = self.app.tables.recovery
        if not recovery.in_recovery:
            return False
        position = int(sum(v for v in recovery.active_offsets.values() if v is not None))
        moved, self.recovered = position != self.recovered, position
        return moved

    def heal(self, stalled: list[Key], now: float) -> None:
        if self.app.rebalancing or self.app.in_recovery:
            # Faust pauses and seeks partitions itself until the rebalance is done.
            log.warning("folding stalled in a rebalance: %s", self.progress.describe(stalled, now))
            return
        self.heals += 1
        offsets = {TP(t, p): self.progress.partitions[(t, p)].next or 0 for t, p in stalled}
        log.warning(
            "folding stalled: %s; re-seeking them to their stored positions",
            self.progress.describe(stalled, now),
        )
        consumer = self.app.consumer
        consumer.resume_partitions(set(offsets))
        if not consumer.flow_active:
            consumer.resume_flow()
            self.app.flow_control.resume()
        for tp in offsets:
            consumer._read_offset[tp] = None  # or Faust drops re-read records as seen
        self.rewinding = asyncio.ensure_future(consumer.rewind(offsets))
        self.rewinding.add_done_callback(_log_failure)

    def give_up(self, stalled: list[Key], now: float) -> None:
        log.error(
            "folding still stalled after re-seeking: %s; stopping the worker (exit code %d) "
            "so that its supervisor restarts it",
            self.progress.describe(stalled, now),
            EXIT_STALLED,
        )
        self.gave_up = True
        hard_exit = threading.Timer(HARD_EXIT_AFTER, os._exit, args=(EXIT_STALLED,))
        hard_exit.daemon = True  # only for a stop that hangs: a clean exit does not wait
        hard_exit.start()
        os.kill(os.getpid(), signal.SIGTERM)  # Faust's own graceful stop

    def _publish(self, now: float, stalled: list[Key]) -> None:
        if self.status is None:
            return
        lines = self.progress.render("kycflow_worker", now)
        lines += scalar(
            "kycflow_worker_stall_heals_total",
            "counter",
            "Times the worker re-sought stalled partitions.",
            self.heals,
        )
        lines += scalar(
            "kycflow_worker_folded_records_total",
            "counter",
            "Raw records folded.",
            self.folder.folded,
        )
        lines += scalar(
            "kycflow_worker_rebalancing",
            "gauge",
            "1 while the consumer group rebalances.",
            int(bool(self.app.rebalancing)),
        )
        self.status.publish(
            Snapshot("\n".join(lines) + "\n", not stalled, self._health(now, stalled))
        )

    def _health(self, now: float, stalled: list[Key]) -> dict[str, Any]:
        partitions = {
            f"{topic}[{partition}]": {
                "next_offset": part.next,
                "end_offset": part.end,
                "lag": part.lag,
                "idle_seconds": round(self.progress.idle((topic, partition), now), 1),
            }
            for (topic, partition), part in sorted(self.progress.partitions.items())
        }
        return {
            "status": "stalled" if stalled else "ok",
            "stalled": [f"{t}[{p}]" for t, p in stalled],
            "rebalancing": bool(self.app.rebalancing),
            "partitions": partitions,
        }


def _log_failure(done: asyncio.Future[None]) -> None:
    if not done.cancelled() and done.exception() is not None:
        log.error("re-seeking stalled partitions failed: %r", done.exception())


def _highwater(consumer: Any, tp: TP) -> int:
    try:
        return int(consumer.highwater(tp) or 0)
    except Exception:  # not (or no longer) assigned in aiokafka
        return 0
