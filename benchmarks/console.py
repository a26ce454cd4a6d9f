"""`python -m benchmarks.console`: server time of the console's overview and search pages
over a real-sized projections database (issue 11: well under 200 ms at 100,000).

The database is migrated by the service's own schema code, then filled with synthetic
rows in one transaction (100,000 verifications across providers, kinds and statuses, two
transitions each, a quarantine); the pages are served by the real aiohttp application on
loopback and fetched one after another, so each time is the whole request: an upper
bound on the server time. Prints a plain-text table; never fails.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import tempfile
import time
from pathlib import Path

from aiohttp import ClientSession, web

from benchmarks.__main__ import table
from projections.schema import open_projections
from statemachines.envelope import PROVIDERS
from statemachines.machines import LIFECYCLES
from streams.console import setup_console

VERIFICATIONS = 100_000
ROUNDS = 30
KINDS = ("kyc", "kyb", "aml_monitoring")


def fill(path: str, count: int, seed: int = 7) -> None:
    """`count` verifications with two transitions each and one quarantined delivery per 1,000."""
    pick = random.Random(seed)
    db = open_projections(path)
    base = time.time() - 30 * 86400
    verifications, transitions = [], []
    for n in range(count):
        provider, kind = PROVIDERS[n % len(PROVIDERS)], KINDS[(n // 3) % len(KINDS)]
        status = pick.choice(LIFECYCLES[kind].statuses)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(base + n * 25)) + ".000000Z"
        subject = f"{provider}/{kind}/id-{n:07d}"
        verifications.append(
            (subject, provider, kind, f"id-{n:07d}", status, 0, None, 1, None, "[]", 2, stamp)
        )
        for version, (old, new) in enumerate(((None, "submitted"), ("submitted", status)), 1):
            offset = 2 * n + version
            transitions.append(
                (subject, version, old, new, "t", 1, 0, None, "E", f"d{offset}", offset, stamp)
            )
    with db.conn:
        db.conn.executemany(
            "INSERT INTO verifications (subject, provider, kind, id, status, final, decided_by, "
            "attempt, provider_status, reasons, version, updated_at, fold_attempts, fold_seen) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '', x'')",
            verifications,
        )
        db.conn.executemany(
            "INSERT INTO transitions (subject, version, from_status, to_status, trigger, "
            'attempt, final, decided_by, event_type, dedup_key, "offset", received_at, '
            "provider_status, reasons) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, '[]')",
            transitions,
        )
        db.conn.executemany(
            "INSERT INTO quarantine VALUES (?, 'idenfy', 'unknown event', 'X', ?, ?)",
            [(10**9 + n, f"q{n}", "2026-01-01T00:00:00.000000Z") for n in range(count // 1000)],
        )
    db.conn.execute("ANALYZE")
    db.close()


def pages(count: int) -> dict[str, str | None]:
    n = count // 2 - count // 2 % 9  # an idenfy kyc subject in the middle
    return {
        "overview /ui/": "/ui/",
        "search, newest first": "/ui/verifications",
        "search, filtered": "/ui/verifications?provider=ondato&kind=kyc&status=approved",
        "search by provider id": f"/ui/verifications?q=id-{n:07d}",
        "search, page 2 (cursor)": None,  # the first page's next link
        "timeline": f"/ui/verifications/idenfy/kyc/id-{n:07d}",
    }


async def measure(path: str, count: int = VERIFICATIONS, rounds: int = ROUNDS) -> list[list[str]]:
    app = web.Application()
    setup_console(app, path, api_token=None)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    rows = []
    try:
        async with ClientSession(f"http://127.0.0.1:{port}") as client:
            async with client.get("/ui/verifications") as first:
                text = await first.text()
            cursor = text.split('href="/ui/verifications?cursor=', 1)[1].split('"', 1)[0]
            for name, page in pages(count).items():
                url = page or f"/ui/verifications?cursor={cursor.replace('&amp;', '&')}"
                times = []
                for _ in range(rounds):
                    start = time.perf_counter()
                    async with client.get(url) as response:
                        await response.read()
                        if response.status != 200:
                            raise RuntimeError(f"{url}: {response.status}")
                    times.append((time.perf_counter() - start) * 1000)
                times.sort()
                rows.append(
                    [
                        name,
                        f"{statistics.median(times):.1f}",
                        f"{times[int(len(times) * 0.95) - 1]:.1f}",
                    ]
                )
    finally:
        await runner.cleanup()
    return rows


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "kycflow.db")
        started = time.perf_counter()
        fill(path, VERIFICATIONS)
        built = time.perf_counter() - started
        rows = asyncio.run(measure(path))
    print(
        f"Console pages over {VERIFICATIONS:,} verifications (built in {built:.1f} s), "
        f"{ROUNDS} sequential requests each, whole request on loopback:"
    )
    print(table(["page", "median ms", "p95 ms"], rows))


if __name__ == "__main__":
    main()
