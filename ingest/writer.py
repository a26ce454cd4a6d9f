"""The single raw-log writer process, and the client HTTP workers use to reach it.

HTTP workers (one per core) authenticate and build envelopes, then send them here over a
unix socket; this process appends whatever has queued up as one transaction — many
requests share one fsync — and answers each with its offset once the commit is durable.
A single writer also makes "exactly one of several concurrent copies is not a duplicate"
trivially true. While a commit's fsync runs in a worker thread (sqlite3 releases the
GIL), the event loop keeps reading the next batch.

Frames: request  = u32 length | u32 id | u16 meta length | meta JSON | body bytes
        response = u32 id | i64 offset (-1: not stored) | u8 duplicate
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import struct
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ingest.rawlog import RawLogWriter, Receipt
from statemachines.envelope import RawEnvelope

log = logging.getLogger("kycflow.writer")
MAX_BATCH = 2000
_RESPONSE = struct.Struct(">IqB")
_HEAD = struct.Struct(">IIH")


class WriterUnavailable(Exception):
    """The writer could not durably store the envelope: answer 503, never 2xx."""


def encode_request(request_id: int, env: RawEnvelope) -> bytes:
    meta = json.dumps(
        [
            env.provider,
            dict(env.headers),
            env.received_at,
            env.dedup_key,
            env.body_sha256,
            env.auth_method,
            env.remote_addr,
        ],
        separators=(",", ":"),
    ).encode()
    return _HEAD.pack(4 + 2 + len(meta) + len(env.body), request_id, len(meta)) + meta + env.body


def decode_request(frame: bytes) -> tuple[int, RawEnvelope]:
    request_id, meta_len = struct.unpack_from(">IH", frame)
    meta = json.loads(frame[6 : 6 + meta_len])
    provider, headers, received_at, dedup_key, sha, auth, remote = meta
    body = frame[6 + meta_len :]
    env = RawEnvelope(provider, body, headers, received_at, dedup_key, sha, auth, remote)
    return request_id, env


# --- the writer process ---------------------------------------------------------------------
class WriterServer:
    def __init__(self, raw_path: str | Path) -> None:
        self.log = RawLogWriter(raw_path)
        self.pending: list[tuple[asyncio.StreamWriter, int, RawEnvelope]] = []
        self.wake = asyncio.Event()
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="commit")

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                (length,) = struct.unpack(">I", await reader.readexactly(4))
                request_id, env = decode_request(await reader.readexactly(length))
                self.pending.append((writer, request_id, env))
                self.wake.set()

    async def commit_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self.wake.wait()
            batch, self.pending = self.pending[:MAX_BATCH], self.pending[MAX_BATCH:]
            if not self.pending:
                self.wake.clear()
            receipts: list[Receipt] | None
            try:
                receipts = await loop.run_in_executor(
                    self.thread, self.log.append, [env for _, _, env in batch]
                )
            except Exception:
                log.exception("raw-log commit failed; %d requests answered 503", len(batch))
                receipts = None
            for index, (writer, request_id, _) in enumerate(batch):
                offset, duplicate = (-1, False) if receipts is None else receipts[index]
                with contextlib.suppress(ConnectionError, RuntimeError):
                    writer.write(_RESPONSE.pack(request_id, offset, duplicate))


async def run_writer(
    socket_path: str, raw_path: str | Path, ready: asyncio.Event | None = None
) -> None:
    server = WriterServer(raw_path)
    Path(socket_path).unlink(missing_ok=True)
    unix = await asyncio.start_unix_server(server.handle, path=socket_path)
    log.info("raw-log writer ready on %s", socket_path)
    if ready is not None:
        ready.set()
    async with unix:
        await server.commit_forever()


# --- the client, in each HTTP worker ----------------------------------------------------------
class WriterClient:
    """One multiplexed connection to the writer; requests are matched to replies by id."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self.waiting: dict[int, asyncio.Future[Receipt]] = {}
        self.next_id = 0
        self.writer: asyncio.StreamWriter | None = None
        self.connecting = asyncio.Lock()

    async def append(self, env: RawEnvelope) -> Receipt:
        writer = await self._connection()
        self.next_id = (self.next_id + 1) % 2**32
        request_id = self.next_id
        reply: asyncio.Future[Receipt] = asyncio.get_running_loop().create_future()
        self.waiting[request_id] = reply
        try:
            writer.write(encode_request(request_id, env))
            receipt = await reply
        finally:
            self.waiting.pop(request_id, None)
        if receipt.offset < 0:
            raise WriterUnavailable("the raw log could not commit")
        return receipt

    async def _connection(self) -> asyncio.StreamWriter:
        async with self.connecting:
            if self.writer is None or self.writer.is_closing():
                try:
                    reader, self.writer = await asyncio.open_unix_connection(self.socket_path)
                except OSError as exc:
                    raise WriterUnavailable(f"raw-log writer unreachable: {exc}") from exc
                asyncio.get_running_loop().create_task(self._read_replies(reader))
            return self.writer

    async def _read_replies(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                request_id, offset, duplicate = _RESPONSE.unpack(
                    await reader.readexactly(_RESPONSE.size)
                )
                reply = self.waiting.get(request_id)
                if reply is not None and not reply.done():
                    reply.set_result(Receipt(offset, bool(duplicate)))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:  # the writer went away: nothing in flight was acknowledged
            self.writer = None
            for reply in self.waiting.values():
                if not reply.done():
                    reply.set_exception(WriterUnavailable("raw-log writer connection lost"))

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(ConnectionError):
                await self.writer.wait_closed()
