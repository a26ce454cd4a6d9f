"""Benchmarks of the embedded service, all figures from one run on this machine.

1. Durable ingest at 64 connections against its ceiling (benchmarks.ingest): the bare
   aiohttp server (the yardstick: storing nothing), the naive baseline (one commit per
   request) and `kycflow serve`, once per variant, in alternating rounds of `wrk`.
   Reported: webhooks/s, p50, p99, the ratios to the yardstick and to the baseline, and CPU
   µs per acknowledged webhook per process role. The processor runs as in production;
   after each burst we time how long it catches up.
2. Processor throughput: the first variant's last burst folded into a fresh projections
   file by the processor's loop (read and unseal the log, `ProjectionStore.process`, in
   the processor's batches), events/s.
3. Ingest-to-projection latency at a steady 1,000 webhooks/s, from the processor's own
   histogram (raw `received_at` to projection commit), with the first variant's settings.
4. Replay of REPLAY_EVENTS raw webhooks (a realistic mix of all three providers), sealed
   under per-subject data keys as the service stores them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import ingest
from benchmarks.__main__ import table
from benchmarks.ingest import Contender
from benchmarks.load import DURATION, TOKEN, Load, running
from benchmarks.replay_data import build_raw_log
from benchmarks.steady import steady_load
from ingest import rawlog
from ingest.sealing import MasterKeyError, MasterKeys, load_master_keys, new_master_key
from projections.schema import open_projections
from projections.store import ProjectionStore
from streams.embedded.processor import BATCH
from streams.embedded.replay import rebuild
from streams.tuning import tune_gc

__all__ = ["Load", "main"]  # Load: where the Kafka benchmark's tests have imported it from

REPLAY_EVENTS = int(os.environ.get("KYCFLOW_BENCH_REPLAY_EVENTS", "1000000"))
PORT = 18710  # the latency run; benchmarks.ingest uses the ports from 18700


def processor_rate(db: Path, work: Path, extra: dict[str, str]) -> tuple[int, float]:
    """Events/s of the processor's loop over the burst's raw log, into a fresh file: reading
    and unsealing the log, the fold and the writes, in the processor's batches, as
    `run_processor` runs them (its GC tuning too), minus its idle polling."""
    tune_gc()
    target = work / "processor-only.db"
    store = ProjectionStore(open_projections(str(target)))
    path = rawlog.raw_log_path(db)
    events = offset = 0
    with contextlib.closing(rawlog.connect(path, readonly=True, master=_master(db, extra))) as raw:
        started = time.perf_counter()
        while envelopes := rawlog.read_after(raw, offset, BATCH):
            store.process(envelopes)
            offset, events = envelopes[-1].offset, events + len(envelopes)
        elapsed = time.perf_counter() - started
    store.db.close()
    return events, events / elapsed


def _master(db: Path, extra: dict[str, str]) -> MasterKeys | None:
    """The key the service sealed the log with (its first-run file), if it sealed it."""
    try:
        return load_master_keys({**os.environ, **extra}, db)
    except MasterKeyError:
        return None  # encryption off: nothing sealed, nothing generated


def latency_row(work: Path, extra: dict[str, str]) -> dict[str, float]:
    db = work / "steady.db"
    kycflow = [str(Path(sys.executable).parent / "kycflow"), "serve"]
    env = {**ingest.serve_env(db, PORT), **extra}
    with running(kycflow, env, PORT) as url:
        return asyncio.run(steady_load(url, TOKEN, rate=1000, seconds=DURATION))


def replay_rate(work: Path) -> tuple[int, float]:
    """Replay of a log sealed as the service seals it (encryption is on by default)."""
    db = work / "replay.db"
    master = MasterKeys.parse(new_master_key(), "benchmark")
    build_raw_log(rawlog.raw_log_path(db), REPLAY_EVENTS, master=master)
    started = time.perf_counter()
    count = rebuild(rawlog.raw_log_path(db), str(work / "replayed.db"), master=master)
    return count, count / (time.perf_counter() - started)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="kycflow-bench-") as tmp:
        work = Path(tmp)
        everyone = ingest.run_rounds(work)
        print(ingest.report(everyone), end="\n\n", flush=True)  # kept if a later row fails
        served = next(c for c in everyone if c.processor)  # the first kycflow variant
        assert served.db is not None
        extra = ingest.variants()[served.name]
        events, processed = processor_rate(served.db, work, extra)
        steady = latency_row(work, extra)
        replayed, replay_speed = replay_rate(work)
    print(report(everyone, served, events, processed, steady, replayed, replay_speed))


def report(
    everyone: list[Contender],
    served: Contender,
    events: int,
    processed: float,
    steady: dict[str, float],
    replayed: int,
    replay_speed: float,
) -> str:
    errors = sum(load.errors for contender in everyone for load in contender.loads)
    rows = [
        (
            f"processor catch-up after a burst ({served.name})",
            f"{statistics.median(served.catch_up):.1f} s",
            "median of rounds",
            "",
        ),
        (
            "processor, raw_log -> projections",
            f"{processed:,.0f} ev/s",
            f"{events:,} events",
            ">= 10,000/s",
        ),
        (
            "ingest -> projection at 1,000/s (processor histogram)",
            f"p99 <= {steady['p99_ms']:.0f} ms",
            f"p50 <= {steady['p50_ms']:.0f} ms, "
            f"{steady['sent']:,.0f} sent, client p99 {steady['client_p99_ms']:.1f} ms",
            "p99 <= 50 ms",
        ),
        (
            "replay of the raw log",
            f"{replay_speed:,.0f} ev/s",
            f"{replayed:,} webhooks",
            ">= 30,000/s",
        ),
        ("errors (non-2xx, socket) during the bursts", f"{errors}", "", "0"),
    ]
    head = ("measure", "result", "detail", "target")
    return table(head, rows)


if __name__ == "__main__":
    main()
