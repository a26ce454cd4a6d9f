"""Per-partition progress of a Kafka-mode consumer (worker or projector), and stalls.

A partition *stalls* when it has records left to read (its end is past the consumer's next
offset) and that next offset has not moved for `timeout` seconds. Reaching the end counts
as progress, so an idle partition never stalls; (re)assignment starts a fresh clock, and
`touch` lets other work (a worker's table recovery) count as progress for every partition.
Pure bookkeeping: callers pass the clock in, so it is tested without sleeping.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

Key = tuple[str, int]  # (topic, partition)


@dataclass
class Partition:
    next: int | None = None  # next offset to read; None: not known yet
    end: int | None = None  # the partition's end (high watermark) as last seen
    since: float = 0.0  # monotonic time of the last progress (or of assignment)
    wall: float = 0.0  # the same moment in Unix time, for the metrics

    @property
    def lag(self) -> int | None:
        if self.end is None:
            return None
        return max(0, self.end - (self.next or 0))


class Progress:
    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.partitions: dict[Key, Partition] = {}

    def assign(self, keys: Iterable[Key], now: float, wall: float) -> None:
        """The partitions held now: new ones start a clock, others are forgotten."""
        wanted = set(keys)
        for key in list(self.partitions):
            if key not in wanted:
                del self.partitions[key]
        for key in wanted:
            if key not in self.partitions:
                self.partitions[key] = Partition(since=now, wall=wall)

    def observe(
        self, key: Key, now: float, wall: float, *, next: int | None = None, end: int | None = None
    ) -> None:
        part = self.partitions.get(key)
        if part is None:
            return
        if end is not None and (part.end is None or end > part.end):
            part.end = end
        moved = next is not None and (part.next is None or next > part.next)
        if next is not None:
            part.next = next
        if moved or part.lag == 0:
            part.since, part.wall = now, wall

    def touch(self, now: float, wall: float) -> None:
        for part in self.partitions.values():
            part.since, part.wall = now, wall

    def idle(self, key: Key, now: float) -> float:
        return now - self.partitions[key].since

    def stalled(self, now: float) -> list[Key]:
        return sorted(
            key
            for key, part in self.partitions.items()
            if (part.lag or 0) > 0 and now - part.since >= self.timeout
        )

    def describe(self, stalled: Iterable[Key], now: float) -> str:
        """Where each stalled partition is and how long it has idled, for a log line."""
        return "; ".join(
            f"{topic}[{partition}] at offset {self.partitions[(topic, partition)].next or 0} "
            f"of {self.partitions[(topic, partition)].end}, "
            f"no progress for {self.idle((topic, partition), now):.0f} s"
            for topic, partition in stalled
        )

    def render(self, prefix: str, now: float) -> list[str]:
        """Prometheus text lines: per-partition lag, offsets, last progress, stalled."""
        rows = sorted(self.partitions.items())
        stalled = set(self.stalled(now))
        lines: list[str] = []

        def family(name: str, kind: str, text: str, values: list[tuple[Key, float]]) -> None:
            lines.extend([f"# HELP {prefix}_{name} {text}", f"# TYPE {prefix}_{name} {kind}"])
            for (topic, partition), value in values:
                labels = f'topic="{topic}",partition="{partition}"'
                lines.append(f"{prefix}_{name}{{{labels}}} {value}")

        family(
            "partition_lag_records",
            "gauge",
            "Records in the partition not yet read (end minus next offset).",
            [(k, p.lag) for k, p in rows if p.lag is not None],
        )
        family(
            "partition_next_offset",
            "gauge",
            "Next offset to read.",
            [(k, p.next) for k, p in rows if p.next is not None],
        )
        family(
            "partition_end_offset",
            "gauge",
            "End of the partition (high watermark) as last seen.",
            [(k, p.end) for k, p in rows if p.end is not None],
        )
        family(
            "partition_last_progress_timestamp_seconds",
            "gauge",
            "Unix time the next offset last moved (or the partition was caught up).",
            [(k, p.wall) for k, p in rows],
        )
        family(
            "partition_stalled",
            "gauge",
            "1 when the partition has records to read and made no progress for the stall timeout.",
            [(k, int(k in stalled)) for k, _ in rows],
        )
        lines += scalar(
            f"{prefix}_assigned_partitions", "gauge", "Partitions this process reads.", len(rows)
        )
        lines += scalar(
            f"{prefix}_stalled", "gauge", "1 when any partition has stalled.", int(bool(stalled))
        )
        return lines


def scalar(name: str, kind: str, text: str, value: float) -> list[str]:
    """One unlabelled Prometheus metric, with its HELP and TYPE lines."""
    return [f"# HELP {name} {text}", f"# TYPE {name} {kind}", f"{name} {value}"]
