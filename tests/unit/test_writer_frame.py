"""The writer's frame (ingest.writer): any size ingest accepts survives the round trip.

Its lengths were 16-bit: stored headers or metadata over 64 KiB once JSON-escaped raised
struct.error, a 500 for a valid webhook (issue 9 §2)."""

from __future__ import annotations

import struct

from ingest.appending import row_of
from ingest.writer import _Frames, encode_request
from statemachines.envelope import RawEnvelope


def envelope(headers: dict[str, str], key: str, body: bytes = b"{}") -> RawEnvelope:
    return RawEnvelope("idwise", body, headers, "2026-11-22T12:00:00Z", key, "0" * 64, "bearer")


def test_a_frame_carries_headers_and_metadata_far_over_64_kib() -> None:
    env = envelope({"user-agent": '"' * 40_000, "x-request-id": "\u0390" * 20_000}, "é" * 30_000)
    frame = encode_request(7, env)
    (length,) = struct.unpack_from(">I", frame)
    assert length == len(frame) - 4
    assert _Frames().feed(frame) == [(7, row_of(env))]


def test_frames_split_anywhere_in_the_stream_are_reassembled_in_order() -> None:
    envs = [envelope({"content-type": "x" * n}, f"k{n}", b"b" * n) for n in (0, 1, 70_000)]
    stream = b"".join(encode_request(n, env) for n, env in enumerate(envs))
    frames, reader = [], _Frames()
    for start in range(0, len(stream), 999):
        frames += reader.feed(stream[start : start + 999])
    assert frames == [(n, row_of(env)) for n, env in enumerate(envs)]
