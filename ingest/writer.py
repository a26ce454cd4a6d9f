"""The single raw-log writer process, and the client HTTP workers use to reach it.

HTTP workers (one per core) authenticate and build envelopes, then send them here over a
unix socket; this process appends whatever has queued up as one transaction — many
requests share one fsync — and answers each with its offset once the commit is durable.
A single writer also makes "exactly one of several concurrent copies is not a duplicate"
trivially true. Requests that arrive during a commit's fsync form the next batch.

Frames: request  = u32 length | u32 id | u32 meta length | u32 headers length | meta JSON
                   | headers JSON (stored as is) | body bytes
        meta     = [provider, received_at, dedup key, sha256, auth, remote, subject]; the
                   subject (routing key) names the data key the writer seals the row under
(32-bit lengths: a frame carries anything ingest accepts; KYCFLOW_MAX_BODY is far below 4 GiB.)
        response = u32 id | i64 offset (-1: not stored) | u8 duplicate
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
from pathlib import Path
from typing import cast

from ingest.appending import RawLogWriter, Receipt, Row, row_of
from ingest.sealing import MasterKeys
from statemachines.envelope import RawEnvelope
from statemachines.routing import owner

log = logging.getLogger("kycflow.writer")
MAX_BATCH = 2000
_RESPONSE = struct.Struct(">IqB")
_HEAD = struct.Struct(">IIII")


class WriterUnavailable(Exception):
    """The writer could not durably store the envelope: answer 503, never 2xx."""


class RecordTooLarge(Exception):
    """The log refuses this envelope for its size, whatever the retry: answer 413."""


def encode_request(request_id: int, env: RawEnvelope, subject: str = "") -> bytes:
    provider, received_at, headers, body, key, sha, auth, remote, _ = row_of(env)
    meta = json.dumps([provider, received_at, key, sha, auth, remote, subject]).encode()
    encoded = headers.encode()
    length = 4 + 4 + 4 + len(meta) + len(encoded) + len(body)
    return _HEAD.pack(length, request_id, len(meta), len(encoded)) + meta + encoded + body


def decode_request(frame: bytes) -> tuple[int, Row]:
    """A frame (without its length prefix) as the row the writer stores, headers untouched."""
    request_id, meta_len, headers_len = struct.unpack_from(">III", frame)
    start = 12 + meta_len
    provider, received_at, key, sha, auth, remote, subject = json.loads(frame[12:start])
    headers = frame[start : start + headers_len].decode()
    return request_id, (
        provider,
        received_at,
        headers,
        frame[start + headers_len :],
        key,
        sha,
        auth,
        remote,
        subject,
    )


# --- the writer process ---------------------------------------------------------------------
class _Frames:
    """Splits a byte stream into request frames; one call may yield many."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, Row]]:
        self.buffer += data
        frames, start = [], 0
        while len(self.buffer) - start >= 4:
            (length,) = struct.unpack_from(">I", self.buffer, start)
            if len(self.buffer) - start - 4 < length:
                break
            frames.append(decode_request(bytes(self.buffer[start + 4 : start + 4 + length])))
            start += 4 + length
        del self.buffer[:start]
        return frames


class _Connection(asyncio.Protocol):
    """One HTTP worker's connection: buffered parsing, replies written once per batch."""

    def __init__(self, server: WriterServer) -> None:
        self.server, self.frames = server, _Frames()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        for request_id, row in self.frames.feed(data):
            self.server.pending.append((self, request_id, row))
        self.server.wake.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


class WriterServer:
    def __init__(self, raw_path: str | Path, master: MasterKeys | None = None) -> None:
        self.log = RawLogWriter(raw_path, master)
        self.pending: list[tuple[_Connection, int, Row]] = []
        self.wake = asyncio.Event()

    async def commit_forever(self) -> None:
        while True:
            await self.wake.wait()
            batch, self.pending = self.pending[:MAX_BATCH], self.pending[MAX_BATCH:]
            if not self.pending:
                self.wake.clear()
            if not batch:
                continue
            # Committed on the loop itself: while the fsync blocks, frames wait in the kernel's
            # socket buffers and become the next batch. (A commit thread measured slower: after
            # each fsync it waited up to a GIL switch interval for the loop to let go.)
            receipts: list[Receipt] | None
            try:
                receipts = self.log.append_rows([row for _, _, row in batch])
            except Exception:
                log.exception("raw-log commit failed; %d requests answered 503", len(batch))
                receipts = None
            self._reply(batch, receipts)
            await asyncio.sleep(0)  # read what arrived during the commit before the next one

    @staticmethod
    def _reply(batch: list[tuple[_Connection, int, Row]], receipts: list[Receipt] | None) -> None:
        replies: dict[_Connection, list[bytes]] = {}
        for index, (conn, request_id, _) in enumerate(batch):
            offset, duplicate = (-1, False) if receipts is None else receipts[index]
            replies.setdefault(conn, []).append(_RESPONSE.pack(request_id, offset, duplicate))
        for conn, chunks in replies.items():
            if conn.transport is not None:  # a worker that went away gets nothing
                conn.transport.write(b"".join(chunks))


async def run_writer(
    socket_path: str,
    raw_path: str | Path,
    ready: asyncio.Event | None = None,
    master: MasterKeys | None = None,
) -> None:
    server = WriterServer(raw_path, master)
    Path(socket_path).unlink(missing_ok=True)
    loop = asyncio.get_running_loop()
    unix = await loop.create_unix_server(lambda: _Connection(server), path=socket_path)
    log.debug("raw-log writer ready on %s", socket_path)  # internal: not for operators
    if ready is not None:
        ready.set()
    async with unix:
        await server.commit_forever()


# --- the client, in each HTTP worker ----------------------------------------------------------
class _Replies(asyncio.Protocol):
    """The client's side of the connection: matches replies to waiting requests by id."""

    def __init__(self, client: WriterClient) -> None:
        self.client, self.buffer = client, bytearray()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        usable = len(self.buffer) - len(self.buffer) % _RESPONSE.size
        for request_id, offset, duplicate in _RESPONSE.iter_unpack(self.buffer[:usable]):
            reply = self.client.waiting.get(request_id)
            if reply is not None and not reply.done():
                reply.set_result(Receipt(offset, bool(duplicate)))
        del self.buffer[:usable]

    def connection_lost(self, exc: Exception | None) -> None:
        # The writer went away: nothing still in flight was acknowledged.
        self.client.transport = None
        for reply in self.client.waiting.values():
            if not reply.done():
                reply.set_exception(WriterUnavailable("raw-log writer connection lost"))


class WriterClient:
    """One multiplexed connection to the writer; requests are matched to replies by id."""

    def __init__(self, socket_path: str, *, sealed: bool = False) -> None:
        # sealed: the writer encrypts each row under its subject's data key, so it must be
        # told the subject — the same routing key Kafka mode keys its records by.
        self.socket_path, self.sealed = socket_path, sealed
        self.waiting: dict[int, asyncio.Future[Receipt]] = {}
        self.next_id = 0
        self.transport: asyncio.Transport | None = None
        self.connecting = asyncio.Lock()
        self.outgoing: list[bytes] = []  # frames of this loop iteration, sent together

    def _flush(self) -> None:
        frames, self.outgoing = self.outgoing, []
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(frames))
            return
        # The connection went away before these frames left: none was stored.
        for reply in self.waiting.values():
            if not reply.done():
                reply.set_exception(WriterUnavailable("raw-log writer connection lost"))

    async def append(self, env: RawEnvelope) -> Receipt:
        await self._connection()
        self.next_id = (self.next_id + 1) % 2**32
        request_id = self.next_id
        reply: asyncio.Future[Receipt] = asyncio.get_running_loop().create_future()
        self.waiting[request_id] = reply
        try:
            # Requests handled in one loop iteration share one send: syscalls are the cost.
            if not self.outgoing:
                asyncio.get_running_loop().call_soon(self._flush)
            subject = owner(env) if self.sealed else ""
            self.outgoing.append(encode_request(request_id, env, subject))
            receipt = await reply
        finally:
            self.waiting.pop(request_id, None)
        if receipt.offset < 0:
            raise WriterUnavailable("the raw log could not commit")
        return receipt

    async def _connection(self) -> asyncio.Transport:
        async with self.connecting:
            if self.transport is None or self.transport.is_closing():
                loop = asyncio.get_running_loop()
                try:
                    transport, _ = await loop.create_unix_connection(
                        lambda: _Replies(self), self.socket_path
                    )
                except OSError as exc:
                    raise WriterUnavailable(f"raw-log writer unreachable: {exc}") from exc
                self.transport = transport
            return self.transport

    async def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
