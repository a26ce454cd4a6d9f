"""The console benchmark keeps working (at a small scale): every page it times answers 200."""

from __future__ import annotations

import asyncio
from pathlib import Path

from benchmarks.console import fill, measure


def test_console_benchmark_runs_every_page(tmp_path: Path) -> None:
    path = str(tmp_path / "kycflow.db")
    fill(path, 300)
    rows = asyncio.run(measure(path, count=300, rounds=1))
    assert rows[0][0] == "overview /ui/" and len(rows) == 6
