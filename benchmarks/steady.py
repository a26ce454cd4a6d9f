"""A steady webhook rate, and the ingest-to-projection latency it sees.

Sends unique IDWise deliveries on a fixed schedule (not as fast as possible), then reads
the processor's own histogram of (projection commit - raw `received_at`), taking the
difference of two scrapes so only this load counts. Percentiles are bucket upper bounds.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid

import aiohttp


async def _histogram(session: aiohttp.ClientSession, url: str) -> dict[float, float]:
    async with session.get(url + "/metrics") as response:
        text = await response.text()
    found = re.findall(r'kycflow_projection_lag_seconds_bucket\{le="([^"]+)"\} ([\d.e+]+)', text)
    return {float("inf") if le == "+Inf" else float(le): float(v) for le, v in found}


async def _lag(session: aiohttp.ClientSession, url: str) -> float:
    async with session.get(url + "/metrics") as response:
        text = await response.text()
    found = re.search(r"^kycflow_processor_lag_events ([\d.e+-]+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 1.0


def _percentile(counts: dict[float, float], share: float) -> float:
    total = counts[float("inf")]
    for bound in sorted(counts):
        if counts[bound] >= share * total:
            return bound * 1000
    return float("inf")


async def steady_load(url: str, token: str, rate: int, seconds: int) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    latencies: list[float] = []
    async with aiohttp.ClientSession() as session:
        before = await _histogram(session, url)

        async def post(index: int) -> None:
            event = uuid.uuid4().hex
            body = (
                f'{{"event":"Finished Journey","body":{{"eventId":"{event}",'
                f'"journeyId":"steady-{index}","systemDecision":"Complete"}}}}'
            )
            started = time.perf_counter()
            async with session.post(
                url + "/webhooks/idwise", data=body, headers=headers
            ) as response:
                await response.read()
            latencies.append(time.perf_counter() - started)

        start = time.perf_counter()
        tasks = []
        for index in range(rate * seconds):
            delay = start + index / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(post(index)))
        await asyncio.gather(*tasks)
        while await _lag(session, url) > 0:
            await asyncio.sleep(0.05)
        after = await _histogram(session, url)
    delta = {bound: after[bound] - before.get(bound, 0.0) for bound in after}
    latencies.sort()
    return {
        "sent": float(len(latencies)),
        "p50_ms": _percentile(delta, 0.50),
        "p99_ms": _percentile(delta, 0.99),
        "client_p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
    }
