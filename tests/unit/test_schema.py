"""The projections database can be opened by several processes at once on first start
(Kafka mode: `serve` and `project` share it): one migrates, the others wait."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from projections.schema import PROJECTION_TABLES, open_projections


def _open(path: str, results: multiprocessing.Queue[str]) -> None:
    try:
        open_projections(path).close()
        results.put("ok")
    except Exception as exc:
        results.put(repr(exc))


def test_concurrent_first_opens_all_succeed(tmp_path: Path) -> None:
    fork = multiprocessing.get_context("fork")
    for round_ in range(10):
        path = str(tmp_path / f"round{round_}.db")
        results: multiprocessing.Queue[str] = fork.Queue()
        openers = [fork.Process(target=_open, args=(path, results)) for _ in range(4)]
        for opener in openers:
            opener.start()
        for opener in openers:
            opener.join(30)
        assert [results.get(timeout=5) for _ in openers] == ["ok"] * 4
        db = open_projections(path)
        assert set(PROJECTION_TABLES) <= set(db.table_names())
        db.close()
