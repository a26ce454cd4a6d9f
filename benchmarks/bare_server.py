"""The yardstick for ingest: the limit of our HTTP stack on this machine.

aiohttp on uvloop, one process per core, each with its own `SO_REUSEPORT` listening socket
on one port (as `kycflow serve`'s HTTP workers). Per request it reads the body, checks the
bearer token in constant time and answers the same 202 body as kycflow, storing nothing:
no envelope, no writer, no access log, no metrics. What kycflow spends beyond this is the
price of its durability and bookkeeping; the benchmark reports ingest as a ratio to it.

    python -m benchmarks.bare_server PORT [WORKERS]   (token from KYCFLOW_IDWISE_TOKEN)
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import os
import signal
import socket
import sys

import uvloop
from aiohttp import web


def routes(token: str) -> list[web.RouteDef]:
    expected = f"Bearer {token}".encode()
    offset = 0

    async def receive(request: web.Request) -> web.Response:
        nonlocal offset
        await request.read()  # kycflow authenticates over the exact bytes: it reads them all
        supplied = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(supplied, expected):
            return web.json_response({"error": "unauthorised"}, status=401)
        offset += 1
        body = b'{"offset": %d, "duplicate": false}' % offset
        return web.Response(body=body, status=202, content_type="application/json")

    return [web.post("/webhooks/{provider}", receive)]


async def serve(listener: socket.socket, token: str) -> None:
    app = web.Application()
    app.add_routes(routes(token))
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.SockSite(runner, listener).start()
    await asyncio.Event().wait()


def main(port: int, workers: int, token: str) -> None:
    listeners = [
        socket.create_server(("127.0.0.1", port), backlog=2048, reuse_port=True)
        for _ in range(workers)
    ]
    children = []
    for listener in listeners:
        pid = os.fork()
        if pid == 0:
            uvloop.run(serve(listener, token))
            os._exit(0)
        children.append(pid)
        listener.close()
    # The parent only waits (blocked after the forks: the workers keep the default SIGTERM).
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        os.waitpid(pid, 0)


if __name__ == "__main__":
    count = int(sys.argv[2]) if len(sys.argv) > 2 else os.cpu_count() or 1
    main(int(sys.argv[1]), count, os.environ["KYCFLOW_IDWISE_TOKEN"])
