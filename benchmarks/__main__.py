"""`python -m benchmarks` (or `make bench`): time the pure core and print plain-text tables.

See `benchmarks.core` (speed) and `benchmarks.memory` for what is measured and how.
Takes about a minute; prints, never fails.
"""

from __future__ import annotations

import gc
import os
import platform
import time
from collections.abc import Sequence

from benchmarks.core import NAIVE_EVENTS, ROUNDS, SPEED_HEADERS, measure_speed
from benchmarks.memory import MEMORY_HEADERS, MEMORY_SUBJECTS, measure_memory
from benchmarks.traffic import workloads


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Plain-text table; the first column left-aligned, the rest right-aligned."""
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        first, *rest = cells
        parts = [first.ljust(widths[0])]
        parts += [cell.rjust(width) for cell, width in zip(rest, widths[1:], strict=True)]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(headers), rule, *(line(row) for row in rows)])


def describe_machine() -> str:
    return (
        f"Python {platform.python_version()} on {platform.machine()}, "
        f"nproc={os.cpu_count()}, {platform.platform()}"
    )


def main() -> None:
    began = time.perf_counter()
    print(f"kycflow core benchmark — {describe_machine()}")
    print(
        f"speed: µs/event, median of {ROUNDS} interleaved rounds after a warm-up (ratios: median "
        f"of per-round ratios); naive runs the first {NAIVE_EVENTS:,} events of each stream; "
        "GC on, fixtures frozen"
    )
    built = workloads()
    # The cyclic GC stays on, as in a runtime, so the core pays for collecting the objects it
    # makes. The pre-built envelopes are frozen out of its way: a runtime holds one envelope
    # at a time, and without the freeze full collections would scan tens of thousands of
    # fixture objects that only exist because the benchmark pre-builds them.
    gc.collect()
    gc.freeze()
    speed = [row.cells() for row in measure_speed(built)]
    print()
    print(table(SPEED_HEADERS, speed))
    del built
    gc.unfreeze()
    gc.collect()
    print()
    print(
        f"memory: {MEMORY_SUBJECTS:,} subjects held at once; traced MiB = tracemalloc increase "
        "while they are built and held (states + keys + dict); state JSON = compact JSON of "
        "codec.state_to_dict"
    )
    memory = [row.cells() for row in measure_memory()]
    print()
    print(table(MEMORY_HEADERS, memory))
    print(f"\n({time.perf_counter() - began:.0f} s)")


if __name__ == "__main__":
    main()
