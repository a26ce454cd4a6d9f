"""Stall bookkeeping (streams/kafka/progress.py), with a hand-driven clock."""

from __future__ import annotations

from streams.kafka.progress import Progress

P0, P1 = ("kycflow.raw", 0), ("kycflow.raw", 1)


def test_a_partition_with_records_and_no_progress_stalls_after_the_timeout() -> None:
    progress = Progress(timeout=10)
    progress.assign([P0, P1], now=0, wall=1000)
    progress.observe(P0, 1, 1001, next=5, end=90)
    progress.observe(P1, 1, 1001, next=7, end=7)  # caught up: never stalls
    assert progress.stalled(10.9) == []
    progress.observe(P0, 11, 1011, next=5, end=90)
    progress.observe(P1, 11, 1011, next=7, end=7)
    assert progress.stalled(11) == [P0]
    assert progress.partitions[P0].lag == 85
    progress.observe(P0, 12, 1012, next=6)  # one record folded: progress
    assert progress.stalled(21.9) == []


def test_reassignment_starts_a_fresh_clock_and_forgets_revoked_partitions() -> None:
    progress = Progress(timeout=10)
    progress.assign([P0], now=0, wall=1000)
    progress.observe(P0, 0, 1000, next=0, end=50)
    progress.assign([P1], now=20, wall=1020)
    assert list(progress.partitions) == [P1]
    progress.assign([P0, P1], now=25, wall=1025)
    progress.observe(P0, 25, 1025, next=0, end=50)
    assert progress.stalled(34) == [] and progress.stalled(35) == [P0]


def test_ends_only_grow_and_touch_counts_as_progress() -> None:
    progress = Progress(timeout=10)
    progress.assign([P0], now=0, wall=1000)
    progress.observe(P0, 0, 1000, next=0, end=50)
    progress.observe(P0, 1, 1001, end=40)  # a short answer (Tansu's ListOffsets)
    assert progress.partitions[P0].end == 50
    progress.touch(9, 1009)  # e.g. the worker's table recovery advanced
    assert progress.stalled(18) == [] and progress.stalled(19) == [P0]


def test_metrics_name_each_partition() -> None:
    progress = Progress(timeout=10)
    progress.assign([P0], now=0, wall=1000)
    progress.observe(P0, 0, 1000, next=3, end=8)
    text = "\n".join(progress.render("kycflow_worker", now=11))
    assert 'kycflow_worker_partition_lag_records{topic="kycflow.raw",partition="0"} 5' in text
    labels = '{topic="kycflow.raw",partition="0"}'
    assert f"kycflow_worker_partition_last_progress_timestamp_seconds{labels} 1000" in text
    assert 'kycflow_worker_partition_stalled{topic="kycflow.raw",partition="0"} 1' in text
    assert "kycflow_worker_stalled 1" in text


def test_metrics_keep_every_digit_of_offsets_and_times() -> None:
    """Prometheus reads full numbers: 1.23457e+06 for an offset, or a timestamp rounded to
    ten seconds, would misstate lag and progress."""
    progress = Progress(timeout=10)
    progress.assign([P0], now=0, wall=1_764_528_001.25)
    progress.observe(P0, 0, 1_764_528_001.25, next=1_234_567, end=1_234_569)
    text = "\n".join(progress.render("kycflow_worker", now=1))
    labels = '{topic="kycflow.raw",partition="0"}'
    assert f"kycflow_worker_partition_next_offset{labels} 1234567\n" in text
    assert f"kycflow_worker_partition_last_progress_timestamp_seconds{labels} 1764528001.25" in text
    assert progress.describe([P0], now=1) == (
        "kycflow.raw[0] at offset 1234567 of 1234569, no progress for 1 s"
    )
