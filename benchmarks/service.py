"""Benchmarks of the embedded service, all figures from one run on this machine.

1. Durable ingest at 64 connections: `wrk` (a separate process, C) posts unique IDWise
   webhooks for DURATION seconds, after WARMUP seconds of the same load, to (a) the naive
   baseline — same aiohttp ingest routes, one commit per request — and (b) `kycflow
   serve`. Reported: webhooks/s, p50, p99 and the ratio to the baseline. The processor
   runs during (b), as in production; after the burst we time how long it catches up.
2. Processor throughput: the burst's raw log folded into a fresh projections file by the
   processor's code (`ProjectionStore.process`), events/s.
3. Ingest-to-projection latency at a steady 1,000 webhooks/s, from the processor's own
   histogram (raw `received_at` to projection commit).
4. Replay of REPLAY_EVENTS raw webhooks (a realistic mix of all three providers).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from benchmarks.replay_data import build_raw_log
from benchmarks.steady import steady_load
from ingest import rawlog
from projections.schema import open_projections
from projections.store import ProjectionStore
from streams.embedded.replay import rebuild

DURATION = int(os.environ.get("KYCFLOW_BENCH_SECONDS", "10"))
REPLAY_EVENTS = int(os.environ.get("KYCFLOW_BENCH_REPLAY_EVENTS", "1000000"))
WARMUP = 2  # seconds of the same load before each measured run, unreported
TOKEN = "bench-token"
LUA = Path(__file__).parent / "wrk" / "idwise.lua"
PORT = 18700


@dataclass
class Load:
    rate: float
    p50_ms: float
    p99_ms: float
    errors: int


def wrk(url: str, seconds: int, connections: int = 64) -> Load:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed for the ingest benchmark: apt-get install wrk")
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(LUA), url],
        env={**os.environ, "KYCFLOW_IDWISE_TOKEN": TOKEN},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return Load(
        rate=float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        p50_ms=_millis(re.search(r"50%\s+([\d.]+\w+)", out).group(1)),  # type: ignore[union-attr]
        p99_ms=_millis(re.search(r"99%\s+([\d.]+\w+)", out).group(1)),  # type: ignore[union-attr]
        errors=int(errors.group(1)) if errors else 0,
    )


def _millis(text: str) -> float:
    value, unit = float(re.match(r"[\d.]+", text).group()), re.sub(r"[\d.]", "", text)  # type: ignore[union-attr]
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


@contextlib.contextmanager
def running(command: list[str], env: dict[str, str], port: int) -> Iterator[str]:
    process = subprocess.Popen(
        command,
        env={**os.environ, **env},
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_listening(url)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def _wait_listening(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url + "/healthz", timeout=1).close()
            return
        except urllib.error.HTTPError:
            return  # something answers (the baseline has no /healthz)
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening at {url}")


def metric(url: str, name: str) -> float:
    text = urllib.request.urlopen(url + "/metrics", timeout=5).read().decode()
    found = re.search(rf"^{re.escape(name)} ([\d.e+-]+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def serve_env(db: Path, port: int) -> dict[str, str]:
    return {"KYCFLOW_DB": str(db), "KYCFLOW_PORT": str(port), "KYCFLOW_IDWISE_TOKEN": TOKEN}


def kycflow() -> list[str]:
    return [str(Path(sys.executable).parent / "kycflow"), "serve"]


def ingest_rows(work: Path) -> tuple[Load, Load, float, Path]:
    """Baseline and kycflow under the same wrk load; returns kycflow's catch-up seconds."""
    with running(
        [sys.executable, "-m", "benchmarks.naive_ingest", str(work / "naive.db"), str(PORT)],
        {},
        PORT,
    ) as url:
        wrk(url, WARMUP)  # both servers get the same warm-up before the measured run
        naive = wrk(url, DURATION)
    db = work / "kycflow.db"
    with running(kycflow(), serve_env(db, PORT + 1), PORT + 1) as url:
        wrk(url, WARMUP)
        ours = wrk(url, DURATION)
        started = time.monotonic()
        while metric(url, "kycflow_processor_lag_events") > 0:
            time.sleep(0.05)
        catch_up = time.monotonic() - started
    return naive, ours, catch_up, db


def processor_rate(db: Path, work: Path) -> tuple[int, float]:
    """Events/s of the processor's code over the burst's raw log, into a fresh file."""
    target = work / "processor-only.db"
    store = ProjectionStore(open_projections(str(target)))
    with contextlib.closing(rawlog.connect(rawlog.raw_log_path(db), readonly=True)) as raw:
        envelopes = list(rawlog.iterate(raw))
    started = time.perf_counter()
    for index in range(0, len(envelopes), 1000):
        store.process(envelopes[index : index + 1000])
    return len(envelopes), len(envelopes) / (time.perf_counter() - started)


def latency_row(work: Path) -> dict[str, float]:
    db = work / "steady.db"
    with running(kycflow(), serve_env(db, PORT + 2), PORT + 2) as url:
        return asyncio.run(steady_load(url, TOKEN, rate=1000, seconds=DURATION))


def replay_rate(work: Path) -> tuple[int, float]:
    db = work / "replay.db"
    build_raw_log(rawlog.raw_log_path(db), REPLAY_EVENTS)
    started = time.perf_counter()
    count = rebuild(rawlog.raw_log_path(db), str(work / "replayed.db"))
    return count, count / (time.perf_counter() - started)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="kycflow-bench-") as tmp:
        work = Path(tmp)
        naive, ours, catch_up, db = ingest_rows(work)
        events, processed = processor_rate(db, work)
        steady = latency_row(work)
        replayed, replay_speed = replay_rate(work)
    print(report(naive, ours, catch_up, events, processed, steady, replayed, replay_speed))


def report(
    naive: Load,
    ours: Load,
    catch_up: float,
    events: int,
    processed: float,
    steady: dict[str, float],
    replayed: int,
    replay_speed: float,
) -> str:
    ratio = ours.rate / naive.rate
    rows = [
        (
            "durable ingest, 64 conns: baseline (1 commit/request)",
            f"{naive.rate:,.0f}/s",
            f"p50 {naive.p50_ms:.1f} ms, p99 {naive.p99_ms:.1f} ms",
            "",
        ),
        (
            "durable ingest, 64 conns: kycflow serve (group commit)",
            f"{ours.rate:,.0f}/s",
            f"p50 {ours.p50_ms:.1f} ms, p99 {ours.p99_ms:.1f} ms",
            f"{ratio:.1f}x baseline; >= 8,000/s, p99 <= 20 ms, >= 2.5x",
        ),
        ("  processor catch-up after the burst", f"{catch_up:.1f} s", "", ""),
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
        ("errors (non-2xx) during the bursts", f"{naive.errors + ours.errors}", "", "0"),
    ]
    width = [max(len(r[i]) for r in rows) for i in range(4)]
    head = ("measure", "result", "detail", "target")
    width = [max(w, len(h)) for w, h in zip(width, head, strict=True)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(head, width, strict=True)),
        "  ".join("-" * w for w in width),
    ]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, width, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
