"""The baseline for the ingest benchmark: same HTTP stack, one commit per request.

The same aiohttp `ingest_routes` (auth, limits, envelope) as `kycflow serve`, but each
request is appended and committed on its own (`synchronous=FULL`), serialised through one
connection — the straightforward durable design the group-commit writer must beat.

    python -m benchmarks.naive_ingest DB_PATH PORT
"""

from __future__ import annotations

import asyncio
import sys
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

from ingest.app import ingest_routes
from ingest.appending import RawLogWriter, Receipt
from ingest.rawlog import raw_log_path
from ingest.settings import IngestSettings
from statemachines.envelope import RawEnvelope
from streams.service.http import now_iso


class CommitPerRequest:
    def __init__(self, path: str) -> None:
        self.log = RawLogWriter(path)
        self.thread = ThreadPoolExecutor(max_workers=1)  # one connection: serialised commits

    async def append(self, env: RawEnvelope) -> Receipt:
        loop = asyncio.get_running_loop()
        receipts = await loop.run_in_executor(self.thread, self.log.append, [env])
        return receipts[0]


class NoMetrics:
    def accepted(self, provider: str, duplicate: bool, seconds: float) -> None: ...

    def rejected(self, provider: str, status: int) -> None: ...


def main(db: str, port: int) -> None:
    settings = IngestSettings.from_config({"KYCFLOW_IDWISE_TOKEN": "bench-token"})
    app = web.Application(client_max_size=settings.max_body)
    appender = CommitPerRequest(str(raw_log_path(db)))
    app.add_routes(ingest_routes(settings, appender, now_iso, NoMetrics()))
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
