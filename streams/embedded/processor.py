"""The embedded processor: tails the raw log and keeps the projections current.

It reads what the writer committed, in log order, from the checkpoint on; each batch and
the new checkpoint are applied in one transaction (`ProjectionStore.apply`). Under load it
takes up to `BATCH` envelopes at once; when idle it polls every few milliseconds, which
keeps ingest-to-projection latency low without any signalling between processes.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from pathlib import Path
from typing import Protocol

from ingest import rawlog
from ingest.sealing import MasterKeys
from projections.schema import open_projections
from projections.store import ProjectionStore
from statemachines.reduced import CONTROL
from streams.erasure.embedded import truncate

log = logging.getLogger("kycflow.processor")
# Envelopes per transaction under load (when idle a batch is whatever arrived since the last
# poll). Subject keys are random, so each batch dirties index pages all over the file and its
# commit writes them all to the WAL: that cost is per page, not per row, so larger batches
# amortise it (A/B: 1.3x events/s at 5,000 against 1,000 on the replay mix).
BATCH = 5000


class Stop(Protocol):
    def is_set(self) -> bool: ...


class ProcessorMetrics(Protocol):
    def projected(self, events: int, latencies: list[float]) -> None: ...

    def quarantined(self, provider: str) -> None: ...

    def erased(self, subjects: int) -> None: ...


def run_processor(
    db_path: str,
    raw_path: Path,
    stop: Stop,
    metrics: ProcessorMetrics | None = None,
    *,
    batch: int = BATCH,
    idle: float = 0.005,
    master: MasterKeys | None = None,
) -> None:
    while not raw_path.exists() and not stop.is_set():  # the writer creates it
        time.sleep(idle)
    store = ProjectionStore(open_projections(db_path))
    # Rows an erasure rewrites (a reference dropped) are zeroed on disk, not left in free space.
    store.db.execute("PRAGMA secure_delete=ON")
    # Checkpoint the WAL every ~40 MB, not every 4 MB: each checkpoint copies the pages the
    # batches dirtied (all over the file: random keys) and fsyncs; fewer copy a hot page
    # once instead of many times (A/B: 1.05x events/s on the replay mix).
    store.db.execute("PRAGMA wal_autocheckpoint=10000")
    raw = rawlog.connect(raw_path, readonly=True, master=master)
    offset = store.checkpoint()
    log.info("processor resuming after raw offset %d", offset)
    while not stop.is_set():
        envelopes = rawlog.read_after(raw, offset, batch)
        if not envelopes:
            time.sleep(idle)
            continue
        applied = store.process(envelopes)
        offset = envelopes[-1].offset
        erasures = sum(env.provider == CONTROL for env in envelopes)
        if erasures:  # no WAL frame may keep what the erasure removed
            truncate(store.db.conn, attempts=4)
        if metrics is not None:
            now = time.time()
            metrics.projected(len(envelopes), [now - _epoch(e.received_at) for e in envelopes])
            for provider in applied.quarantined:
                metrics.quarantined(provider)
            if erasures:
                metrics.erased(erasures)


def _epoch(received_at: str) -> float:
    try:
        return datetime.fromisoformat(received_at).timestamp()
    except ValueError:
        return time.time()
