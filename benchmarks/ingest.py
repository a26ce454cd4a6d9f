"""Durable ingest against its ceiling: servers measured in alternating rounds of one run.

Contenders, each started fresh for every round on its own port and database:
- `bare`: the yardstick (benchmarks.bare_server): our HTTP stack storing nothing;
- `naive`: the baseline (benchmarks.naive_ingest): same ingest code, one commit a request;
- one `kycflow serve` per variant: a name and the extra environment it runs with.

Each round runs every contender once (the order rotates between rounds, so that no one is
always first after a pause): WARMUP seconds of load, the processor left to catch up, then
DURATION measured seconds of `wrk -t1 -c64`. This host's speed drifts between runs and
others share its cores: the ratios within a round are the figures that travel.

By default two variants, so that encryption at rest's cost is measured in the same run:
raw bodies sealed (the default) and KYCFLOW_ENCRYPTION=off. KYCFLOW_BENCH_VARIANTS, a JSON
object, replaces them, e.g. {"one worker": {"KYCFLOW_WORKERS": "1"}}.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import cpu
from benchmarks.__main__ import table
from benchmarks.load import (
    DURATION,
    EVENTS_PER_JOURNEY,
    TOKEN,
    WARMUP,
    Load,
    Server,
    metric,
    serving,
    wrk,
)

ROUNDS = int(os.environ.get("KYCFLOW_BENCH_ROUNDS", "3"))
DEFAULT_VARIANTS: dict[str, dict[str, str]] = {
    "kycflow serve, sealed": {},
    "kycflow serve, clear": {"KYCFLOW_ENCRYPTION": "off"},
}
PORT = 18700
BARE, NAIVE = "bare server (yardstick)", "naive: 1 commit/request"


def variants() -> dict[str, dict[str, str]]:
    raw = os.environ.get("KYCFLOW_BENCH_VARIANTS", "").strip()
    if not raw:
        return DEFAULT_VARIANTS
    chosen = json.loads(raw)
    if not isinstance(chosen, dict) or not all(
        isinstance(env, dict) and all(isinstance(v, str) for v in env.values())
        for env in chosen.values()
    ):
        raise SystemExit('KYCFLOW_BENCH_VARIANTS: a JSON object {"name": {"VAR": "value"}}')
    return chosen


@dataclass
class Contender:
    name: str
    command: Callable[[Path, int], list[str]]  # (database, port) -> argv
    env: Callable[[Path, int], dict[str, str]]
    roles: cpu.RoleFinder
    processor: bool = False  # has a processor whose lag to wait for
    loads: list[Load] = field(default_factory=list)
    cpu: list[dict[str, float]] = field(default_factory=list)  # µs per webhook by role
    catch_up: list[float] = field(default_factory=list)  # s after the measured run
    others: list[float] = field(default_factory=list)  # cores busy with other processes
    db: Path | None = None  # the last round's database


def contenders() -> list[Contender]:
    python = sys.executable
    kycflow = str(Path(python).parent / "kycflow")
    found = [
        Contender(
            BARE,
            lambda db, port: [python, "-m", "benchmarks.bare_server", str(port)],
            lambda db, port: {"KYCFLOW_IDWISE_TOKEN": TOKEN},
            cpu.bare_roles,
        ),
        Contender(
            NAIVE,
            lambda db, port: [python, "-m", "benchmarks.naive_ingest", str(db), str(port)],
            lambda db, port: {},
            cpu.single_roles,
        ),
    ]
    for name, extra in variants().items():
        found.append(
            Contender(
                name,
                lambda db, port: [kycflow, "serve"],
                _with(extra),
                cpu.serve_roles,
                processor=True,
            )
        )
    return found


def _with(extra: dict[str, str]) -> Callable[[Path, int], dict[str, str]]:
    return lambda db, port: {**serve_env(db, port), **extra}


def serve_env(db: Path, port: int) -> dict[str, str]:
    return {"KYCFLOW_DB": str(db), "KYCFLOW_PORT": str(port), "KYCFLOW_IDWISE_TOKEN": TOKEN}


def run_rounds(work: Path, rounds: int = ROUNDS) -> list[Contender]:
    everyone = contenders()
    for number in range(rounds):
        shift = number % len(everyone)
        for contender in everyone[shift:] + everyone[:shift]:
            slot = everyone.index(contender)  # one port per contender
            db = work / f"round{number}-{slot}" / "ingest.db"
            db.parent.mkdir()
            _measure(contender, db, PORT + slot)
    return everyone


def _measure(contender: Contender, db: Path, port: int) -> None:
    command, env = contender.command(db, port), contender.env(db, port)
    with serving(command, env, port) as server:
        roles = contender.roles(server.pid)
        wrk(server.url, WARMUP)
        _caught_up(contender, server)
        before, busy, wrk_before = cpu.snapshot(roles), cpu.machine_busy(), cpu.children_ticks()
        started = time.monotonic()
        load = wrk(server.url, DURATION)
        elapsed = time.monotonic() - started
        after = cpu.snapshot(roles)
        # Everything else the machine ran meanwhile (other people's work): the noise gauge.
        ours = sum(after.values()) - sum(before.values()) + cpu.children_ticks() - wrk_before
        others = (cpu.machine_busy() - busy - ours) * cpu.TICK / 1_000_000 / elapsed
        if "processor" in roles:  # its work for this load includes the catch-up
            started = time.monotonic()
            _caught_up(contender, server)
            contender.catch_up.append(time.monotonic() - started)
            after["processor"] = cpu.snapshot({"processor": roles["processor"]})["processor"]
    contender.loads.append(load)
    contender.others.append(max(others, 0.0))
    contender.cpu.append(cpu.per_webhook(before, after, load.acknowledged))
    contender.db = db


def _caught_up(contender: Contender, server: Server, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while contender.processor and metric(server.url, "kycflow_processor_lag_events") > 0:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{contender.name}: the processor did not catch up")
        time.sleep(0.05)


# --- report ---------------------------------------------------------------------------------
ROLES = ("http", "writer", "processor", "supervisor", "total")
GOAL = ">= 0.6x bare, p99 <= 2x bare's"  # issue 13


def _ratios(contender: Contender, yardstick: Contender) -> list[float]:
    """Round by round: measured in the same round, so the host's drift cancels."""
    return [
        ours.rate / theirs.rate
        for ours, theirs in zip(contender.loads, yardstick.loads, strict=True)
    ]


def rounds_table(everyone: list[Contender]) -> str:
    bare, naive = everyone[0], everyone[1]
    rows = []
    for number in range(len(bare.loads)):
        for contender in everyone:
            load = contender.loads[number]
            rows.append(
                [
                    f"{number + 1}  {contender.name}",
                    f"{load.rate:,.0f}",
                    f"{load.p50_ms:.1f}",
                    f"{load.p99_ms:.1f}",
                    f"{load.errors}",
                    f"{load.rate / bare.loads[number].rate:.2f}",
                    f"{load.rate / naive.loads[number].rate:.2f}",
                    f"{contender.others[number]:.2f}",
                ]
            )
    head = ["round  server", "webhooks/s", "p50 ms", "p99 ms", "errors", "x bare", "x naive",
            "others' CPU"]  # fmt: skip
    return table(head, rows)


def summary_table(everyone: list[Contender]) -> str:
    """Medians over the rounds; the ratios are medians of the per-round ratios."""
    bare, naive = everyone[0], everyone[1]
    rows = []
    for contender in everyone:
        rates = [load.rate for load in contender.loads]
        pairs = zip(contender.loads, bare.loads, strict=True)
        p99 = [ours.p99_ms / theirs.p99_ms for ours, theirs in pairs]
        rows.append(
            [
                contender.name,
                f"{statistics.median(rates):,.0f}",
                f"{min(rates):,.0f}-{max(rates):,.0f}",
                f"{statistics.median(load.p50_ms for load in contender.loads):.1f}",
                f"{statistics.median(load.p99_ms for load in contender.loads):.1f}",
                f"{statistics.median(_ratios(contender, bare)):.2f}",
                f"{statistics.median(_ratios(contender, naive)):.2f}",
                f"{statistics.median(p99):.1f}",
                GOAL if contender.processor else "",
            ]
        )
    head = ["ingest, 64 conns (median of rounds)", "webhooks/s", "range", "p50 ms", "p99 ms",
            "x bare", "x naive", "p99 / bare's", "goal"]  # fmt: skip
    return table(head, rows)


def cpu_table(everyone: list[Contender]) -> str:
    """CPU µs per acknowledged webhook by role, medians over the rounds."""
    bare_total = statistics.median(spent["total"] for spent in everyone[0].cpu)
    rows = []
    for contender in everyone:
        cells = [contender.name]
        for role in ROLES:
            values = [spent[role] for spent in contender.cpu if role in spent]
            cells.append(f"{statistics.median(values):.0f}" if values else "")
        total = statistics.median(spent["total"] for spent in contender.cpu)
        cells.append(f"{total / bare_total:.1f}")
        rows.append(cells)
    head = ["CPU µs per acknowledged webhook", "HTTP workers", "writer", "processor*",
            "supervisor", "total", "x bare"]  # fmt: skip
    return table(head, rows)


def variant_ratios(everyone: list[Contender]) -> str:
    """The first kycflow variant against each other one, round by round (by default: what
    encryption at rest costs — sealed over clear; issue 12's target is >= 0.9)."""
    served = [contender for contender in everyone if contender.processor]
    lines = []
    for other in served[1:]:
        ratios = _ratios(served[0], other)
        rounds = ", ".join(f"{ratio:.2f}" for ratio in ratios)
        lines.append(
            f"{served[0].name} / {other.name}: {statistics.median(ratios):.2f} "
            f"(median of rounds: {rounds})"
        )
    return "\n".join(lines)


def report(everyone: list[Contender]) -> str:
    note = (
        f"{len(everyone[0].loads)} alternating rounds, wrk -t1 -c64, {DURATION} s each after a "
        f"{WARMUP} s warm-up; ratios are within a round. Unique IDWise webhooks, "
        f"{EVENTS_PER_JOURNEY} per journey (KYCFLOW_BENCH_EVENTS_PER_JOURNEY).\n"
        "* processor: from the measured run's start until it has caught up with it.\n"
        "others' CPU: cores busy with processes other than the server and wrk during the "
        f"measured run ({os.cpu_count()} cores here); a round where it is high is noise."
    )
    parts = [rounds_table(everyone), summary_table(everyone), cpu_table(everyone)]
    parts += [ratios for ratios in [variant_ratios(everyone)] if ratios]
    return "\n\n".join([*parts, note])
