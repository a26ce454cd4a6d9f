"""Faust's aiokafka transport, with the fix for records it throws away (issue 14).

Faust pauses a partition only in its own bookkeeping (a set of active partitions);
aiokafka keeps prefetching every assigned partition. For each fetch Faust hands aiokafka
that very set, which the consumer thread reads later: when recovery has just paused
everything it is empty, and aiokafka reads an empty set as "every partition", so it
returns — and moves its position past — records of paused partitions, which Faust then
drops. Faust relies on its seek to the committed offsets at the end of recovery to fetch
them again, but aiokafka's `seek_to_committed` leaves a partition without a committed offset
where it is: a raw partition nobody had committed yet was skipped to its end and never
folded, and nothing arrived to reveal the gap (seen after a killed deployment restarted).

Here each fetch gets a snapshot of the set, never an empty one, and any record Faust was
handed but did not pass on moves its partition back to that record, so it is fetched again.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

from faust.transport.drivers import aiokafka as driver
from faust.types import TP

log = logging.getLogger("kycflow.worker")


class Consumer(driver.Consumer):
    _handed: Mapping[TP, list[Any]] = {}

    async def _getmany(self, active_partitions: set[TP] | None, timeout: float) -> Any:
        if active_partitions is not None and not active_partitions:
            return {}  # nothing may be read: never ask aiokafka with an empty set
        snapshot = frozenset(active_partitions) if active_partitions is not None else None
        return await self._thread.getmany(snapshot, timeout)  # type: ignore[arg-type]

    async def _wait_next_records(self, timeout: float) -> tuple[Any, Any]:
        records, active = await super()._wait_next_records(timeout)
        self._handed = records or {}
        return records, active

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Any]]:
        passed: dict[TP, int] = {}  # partition -> last offset passed on
        async for tp, message in super().getmany(timeout):
            passed[tp] = message.offset
            yield tp, message
        handed, self._handed = self._handed, {}
        undelivered = {
            tp: first
            for tp, records in handed.items()
            if (first := _first_after(records, passed.get(tp))) is not None
        }
        if undelivered and not self.should_stop:
            await self.rewind(undelivered)

    async def rewind(self, offsets: Mapping[TP, int]) -> None:
        """Move partitions back to these offsets (never forward), in the consumer thread."""
        await self._thread.call_thread(_rewind, self._thread, dict(offsets))


def _first_after(records: list[Any], passed: int | None) -> int | None:
    offsets = [r.offset for r in records if passed is None or r.offset > passed]
    return min(offsets) if offsets else None


async def _rewind(thread: Any, offsets: dict[TP, int]) -> None:
    consumer = thread._ensure_consumer()
    assignment = consumer._subscription.subscription
    assigned = assignment.assignment if assignment is not None else None
    for tp, offset in offsets.items():
        state = assigned.state_value(tp) if assigned is not None else None
        if state is None or not state.has_valid_position or state.position <= offset:
            continue  # not ours any more, or already at (or before) that record
        log.debug("re-reading %s[%d] from %d: records Faust did not pass on", *tp, offset)
        consumer.seek(tp, offset)


class Transport(driver.Transport):
    Consumer = Consumer
