"""Hostile HTTP against a real `kycflow serve` (issue 9 §2): every answer a 2xx after a
durable append or a 4xx with a JSON reason, stored bytes exactly the bytes received, bounded
waits for slow clients, and nothing the client sent in the service's log.

Requests are written byte by byte on raw sockets, so malformed framing, repeated headers and
non-Latin-1 header values reach the server exactly as written. The log checked is the
service's own stdout and stderr.
"""

from __future__ import annotations

import gzip
import http.client
import json
import re
import socket
import time
from base64 import b64encode
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, closing
from pathlib import Path
from typing import Any

import pytest

from tests import payloads as p
from tests.e2e.service import CREDENTIALS, Service, signed
from tests.e2e.test_ingest_http import assert_accepted, assert_refused

Header = tuple[str, str | bytes]
IDWISE_HEADER_SECRET = "custom-header-secret-7f3a"
TOKEN = CREDENTIALS["KYCFLOW_IDWISE_TOKEN"]
ENV = {
    **CREDENTIALS,
    "KYCFLOW_IDWISE_HEADER": f"X-Request-Id: {IDWISE_HEADER_SECRET}",
    "KYCFLOW_HEADER_TIMEOUT": "1",
    "KYCFLOW_READ_TIMEOUT": "1",
}


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    running = Service(tmp_path_factory.mktemp("attacks") / "kycflow.db", ENV).start()
    yield running
    if running.process is not None:
        running.stop()


def service_log(svc: Service) -> str:
    return svc.db.with_suffix(".log").read_text(errors="replace")


# --- raw HTTP ---------------------------------------------------------------------------
def exchange(svc: Service, data: bytes, timeout: float = 10.0) -> tuple[int | None, Any]:
    """Send raw bytes; (status, JSON or raw answer), or (None, b"") if closed unanswered."""
    with socket.create_connection(("127.0.0.1", svc.port), timeout=timeout) as conn:
        conn.sendall(data)
        response = http.client.HTTPResponse(conn)
        try:
            response.begin()
        except (http.client.RemoteDisconnected, ConnectionResetError):
            return None, b""
        raw = response.read()
    try:
        return response.status, json.loads(raw)
    except ValueError:
        return response.status, raw


def head(path: str, headers: Sequence[Header]) -> bytes:
    lines = [f"POST {path} HTTP/1.1".encode(), b"Host: 127.0.0.1", b"Connection: close"]
    for name, value in headers:
        lines.append(
            name.encode() + b": " + (value if isinstance(value, bytes) else value.encode())
        )
    return b"\r\n".join(lines) + b"\r\n\r\n"


def send(
    svc: Service, provider: str, body: bytes, headers: Sequence[Header]
) -> tuple[int | None, Any]:
    """POST `body` with exactly these headers (and a Content-Length)."""
    framed = [*headers, ("Content-Length", str(len(body)))]
    return exchange(svc, head(f"/webhooks/{provider}", framed) + body)


def chunked(body: bytes, size: int = 64) -> bytes:
    pieces = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in pieces) + b"0\r\n\r\n"


def idwise(event_id: str) -> tuple[bytes, list[Header]]:
    _, headers, body = p.idwise("Finished Journey", event_id=event_id, systemDecision="Complete")
    return body, [*headers.items(), ("Authorization", f"Bearer {TOKEN}")]


def stored(svc: Service) -> list[tuple[Any, ...]]:
    """(offset, headers JSON, body) of every stored delivery, opened with the service's key
    (bodies and kept headers are sealed at rest)."""
    from ingest import rawlog
    from streams import masterkeys

    master = masterkeys.for_reading({}, str(svc.db))
    conn = rawlog.connect(rawlog.raw_log_path(svc.db), readonly=True, master=master)
    try:
        return [(e.offset, json.dumps(dict(e.headers)), e.body) for e in rawlog.iterate(conn)]
    finally:
        conn.close()


def offsets(svc: Service) -> list[int]:
    return [row[0] for row in stored(svc)]


def metric(svc: Service, name: str) -> float:
    text = svc.request("GET", "/metrics")[2].decode()
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert found, name
    return float(found.group(1))


# --- 1. what a delivery stores is bounded: 4xx with a reason, never a 5xx -------------
def test_the_issue_reproductions_get_a_4xx_with_a_reason_and_store_nothing(svc):
    before = offsets(svc)
    body, headers = idwise("quotes")
    quotes = '"' * 8100  # 16,200 characters once JSON-escaped, four times
    kept = [("User-Agent", quotes), ("Ondato-Signature", quotes), ("Idenfy-Event-Type", quotes)]
    answer = send(svc, "idwise", body, [*headers, *kept, ("X-Trace", quotes)])
    assert "header longer than 1024 characters" in assert_refused(answer, 431)["error"]

    _, ondato_headers, ondato_body = p.ondato_idv("Pending", webhook_id="x" * 70_000)
    answer = send(
        svc,
        "ondato",
        ondato_body,
        [*{**ondato_headers, **signed("ondato", ondato_body)}.items()],
    )
    assert "delivery id too long" in assert_refused(answer, 400)["error"]

    body, headers = idwise("é" * 11_000)
    assert (
        "delivery id too long" in assert_refused(send(svc, "idwise", body, headers), 400)["error"]
    )

    _, idenfy_headers, idenfy_body = p.idenfy_identification(scan_ref="greek")
    idenfy_headers["Idenfy-Event-Type"] = "ΐ" * 4000
    answer = send(
        svc,
        "idenfy",
        idenfy_body,
        [*{**idenfy_headers, **signed("idenfy", idenfy_body)}.items()],
    )
    assert "idenfy-event-type header longer" in assert_refused(answer, 431)["error"]
    assert offsets(svc) == before


def test_values_at_the_limits_are_stored_exactly(svc):
    body, headers = idwise("é" * 490)  # "idwise:event:" + 490 = 503 characters <= 512
    agent = '"\\' * 512  # 1,024 characters, 2,048 once JSON-escaped
    offset = assert_accepted(send(svc, "idwise", body, [*headers, ("User-Agent", agent)]))
    row = next(row for row in stored(svc) if row[0] == offset)
    assert json.loads(row[1])["user-agent"] == agent and row[2] == body


def test_a_header_line_over_the_limit_gets_431_and_too_many_headers_431(svc):
    body, headers = idwise("big-header")
    answer = send(svc, "idwise", body, [*headers, ("X-Padding", "a" * 9000)])
    assert "header field is longer" in assert_refused(answer, 431)["error"]
    many = [(f"X-Pad-{n}", "1") for n in range(130)]
    assert (
        "header fields"
        in assert_refused(send(svc, "idwise", body, [*headers, *many]), 431)["error"]
    )
    long_path = "/webhooks/idwise?" + "q" * 5000
    answer = exchange(svc, head(long_path, headers) + b"")
    assert "request line" in assert_refused(answer, 414)["error"]


def test_a_repeated_kept_header_is_refused_rather_than_one_copy_stored(svc):
    body, headers = idwise("repeated-kept")
    twice = [("X-Forwarded-Proto", "https"), ("Ondato-Signature", "a"), ("Ondato-Signature", "b")]
    assert (
        "repeated ondato-signature"
        in assert_refused(send(svc, "idwise", body, [*headers, *twice]), 400)["error"]
    )


# --- 2. compressed bodies: refused however spelled; stored bytes are the bytes sent ---
@pytest.mark.parametrize(
    "codings",
    [
        [("Content-Encoding", "identity"), ("Content-Encoding", "gzip")],
        [("Content-Encoding", "br")],
        [("Content-Encoding", "zstd")],
        [("Content-Encoding", "GZIP")],
        [("Content-Encoding", "identity, gzip")],
        [("Content-Encoding", " Deflate ")],
    ],
)
def test_any_non_identity_content_encoding_gets_415(svc, codings):
    body, headers = idwise("compressed")
    wire = gzip.compress(body)  # signed over the decompressed bytes, as in the issue
    before = offsets(svc)
    assert_refused(send(svc, "idwise", wire, [*headers, *codings]), 415)
    assert_refused(send(svc, "idwise", body, [*headers, *codings]), 415)
    assert offsets(svc) == before


def test_a_transfer_coding_other_than_chunked_gets_415(svc):
    body, headers = idwise("te-gzip")
    wire = gzip.compress(body)
    before = offsets(svc)
    for coding in ("gzip, chunked", "GZIP,chunked", "identity, chunked"):
        answer = exchange(
            svc, head("/webhooks/idwise", [*headers, ("Transfer-Encoding", coding)]) + chunked(wire)
        )
        assert_refused(answer, 415)
    assert offsets(svc) == before


def test_identity_and_chunked_deliveries_store_the_exact_bytes(svc):
    body, headers = idwise("identity")
    body = body.replace(b"{", b"{ ", 1)  # any bytes: stored as sent
    first = assert_accepted(send(svc, "idwise", body, [*headers, ("Content-Encoding", "identity")]))
    body2, headers2 = idwise("chunked")
    framed = head("/webhooks/idwise", [*headers2, ("Transfer-Encoding", "Chunked")]) + chunked(
        body2, 7
    )
    second = assert_accepted(exchange(svc, framed))
    rows = {row[0]: row[2] for row in stored(svc)}
    assert rows[first] == body and rows[second] == body2


def test_the_token_endpoint_refuses_compressed_and_non_form_bodies(svc):
    auth = (
        "Authorization",
        "Basic " + b64encode(b"ondato-client:ondato-client-secret").decode(),
    )
    form = b"grant_type=client_credentials"
    for extra, wire in (
        ([("Content-Encoding", "gzip")], gzip.compress(form)),
        ([("Content-Encoding", "identity"), ("Content-Encoding", "deflate")], form),
    ):
        framed = [auth, ("Content-Type", "application/x-www-form-urlencoded"), *extra]
        status, doc = exchange(
            svc, head("/oauth/token", [*framed, ("Content-Length", str(len(wire)))]) + wire
        )
        assert status == 415 and doc["error"] == "invalid_request", (status, doc)
    multipart = [auth, ("Content-Type", "multipart/form-data; boundary=x"), ("Content-Length", "0")]
    assert exchange(svc, head("/oauth/token", multipart))[0] == 415
    ok = [
        auth,
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("Content-Length", str(len(form))),
    ]
    status, doc = exchange(svc, head("/oauth/token", ok) + form)
    assert status == 200 and doc["token_type"] == "Bearer", doc


# --- 3. nothing the client sent reaches the log ----------------------------------------
def test_malformed_requests_get_400_and_their_bytes_stay_out_of_the_log(svc):
    secret = "bearer-secret-4c1d9e"
    body = b'{"event": "Finished Journey", "body": {"eventId": "pii-body-77aa"}}'
    bare_lf = f"POST /webhooks/idwise HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {secret}\n\r\n"
    lf_chunks = (
        f"POST /webhooks/idwise HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode() + b"%x\n%s\n0\n\n" % (len(body), body)
    nul = f"POST /webhooks/idwise HTTP/1.1\r\nHost: x\r\nX-Key: {secret}\x00\r\n\r\n"
    bad_method = f"P{secret} /webhooks/idwise HTTP/1.1\r\n\r\n"
    for raw in (bare_lf.encode(), lf_chunks, nul.encode(), bad_method.encode()):
        status, doc = exchange(svc, raw)
        assert status == 400 and doc == {"error": "malformed HTTP request"}, (status, doc)
    # A chunked body broken after the head was parsed: the route's read fails, not the parser.
    with socket.create_connection(("127.0.0.1", svc.port), timeout=10) as conn:
        conn.sendall(
            head(
                "/webhooks/idwise",
                [("Authorization", f"Bearer {TOKEN}"), ("Transfer-Encoding", "chunked")],
            )
        )
        time.sleep(0.2)
        conn.sendall(b"%x\n%s\n0\n\n" % (len(body), body))
        began = time.monotonic()
        response = http.client.HTTPResponse(conn)
        response.begin()
        assert response.status == 400 and time.monotonic() - began < 0.9  # not the 408
    time.sleep(0.3)  # let the workers write their log lines
    text = service_log(svc)
    for leaked in (secret, "pii-body-77aa", TOKEN):
        assert leaked not in text
    assert "Traceback" not in text


# --- 4. deadlines for slow clients, and open connections counted -----------------------
def test_slow_headers_get_408_within_the_header_timeout_and_are_counted(svc):
    timeouts = metric(svc, "kycflow_http_header_timeouts_total")
    baseline = metric(svc, "kycflow_http_open_connections")
    began = time.monotonic()
    with ExitStack() as stack:
        drips = [
            stack.enter_context(socket.create_connection(("127.0.0.1", svc.port), timeout=10))
            for _ in range(20)
        ]
        silent = [
            stack.enter_context(socket.create_connection(("127.0.0.1", svc.port), timeout=10))
            for _ in range(5)
        ]
        for conn in drips:
            conn.sendall(b"POST /webhooks/idwise HTTP/1.1\r\n")
        time.sleep(0.3)
        assert metric(svc, "kycflow_http_open_connections") >= baseline + 25
        closed: set[int] = set()
        deadline = time.monotonic() + 5
        while len(closed) < len(drips) and time.monotonic() < deadline:
            for n, conn in enumerate(drips):
                if n not in closed:
                    try:  # a byte every 0.2 s keeps the connection busy, never complete
                        conn.sendall(b"X")
                    except OSError:
                        closed.add(n)
            time.sleep(0.2)
        assert len(closed) == len(drips)
        for conn in silent:
            assert conn.recv(100) == b""  # closed without an answer: it never began a request
        answers = [conn.recv(1000) for conn in drips[:3]]
    assert time.monotonic() - began < 4
    for answer in answers:
        assert answer.startswith(b"HTTP/1.1 408 ") or answer == b"", answer
    assert any(a.startswith(b"HTTP/1.1 408 ") for a in answers)
    assert metric(svc, "kycflow_http_header_timeouts_total") >= timeouts + 20
    time.sleep(0.2)
    assert metric(svc, "kycflow_http_open_connections") == baseline


def test_a_keep_alive_connection_gets_the_header_deadline_for_its_next_request(svc):
    body, headers = idwise("keep-alive")
    framed = [*headers, ("Content-Length", str(len(body)))]
    data = head("/webhooks/idwise", framed).replace(b"Connection: close\r\n", b"") + body
    with socket.create_connection(("127.0.0.1", svc.port), timeout=10) as conn:
        conn.sendall(data)
        response = http.client.HTTPResponse(conn)
        response.begin()
        assert response.status == 202
        response.read()
        conn.sendall(b"POST /webhooks/idwise HTTP/1.1\r\nHost: x\r\n")  # then nothing
        began = time.monotonic()
        rest = conn.recv(1000)
        assert rest.startswith(b"HTTP/1.1 408 "), rest
        assert 0.5 < time.monotonic() - began < 3


def test_a_token_request_declaring_a_large_body_gets_413_without_waiting_for_it(svc):
    framed = [("Content-Type", "application/x-www-form-urlencoded"), ("Content-Length", "2000000")]
    began = time.monotonic()
    status, doc = exchange(svc, head("/oauth/token", framed))
    assert status == 413 and doc["error"] == "invalid_request", (status, doc)
    assert time.monotonic() - began < 0.9  # not the read deadline's 408


def test_a_stalled_token_request_body_gets_408(svc):
    data = (
        head(
            "/oauth/token",
            [("Content-Type", "application/x-www-form-urlencoded"), ("Content-Length", "100")],
        )
        + b"grant_type=client"
    )
    began = time.monotonic()
    status, doc = exchange(svc, data)
    assert status == 408 and doc["error"] == "invalid_request", (status, doc)
    assert time.monotonic() - began < 3


# --- 5. a header that carries a configured secret is never stored ---------------------
def test_the_custom_idwise_auth_header_is_never_stored_though_allow_listed(svc):
    body, headers = idwise("custom-header")
    headers = [h for h in headers if h[0] != "Authorization"]
    offset = assert_accepted(
        send(svc, "idwise", body, [*headers, ("X-Request-Id", IDWISE_HEADER_SECRET)])
    )
    row = next(row for row in stored(svc) if row[0] == offset)
    assert "x-request-id" not in json.loads(row[1])
    raw = svc.db.with_name(svc.db.stem + ".raw.db")
    assert (
        IDWISE_HEADER_SECRET.encode()
        not in raw.read_bytes() + raw.with_name(raw.name + "-wal").read_bytes()
    )


# --- 6. the access log ------------------------------------------------------------------
def test_each_request_gets_one_access_line_without_query_values_headers_or_body(svc):
    body, headers = idwise("access-log-event")
    status, _ = exchange(
        svc,
        head("/webhooks/idwise?sig=query-secret-91", [*headers, ("Content-Length", str(len(body)))])
        + body,
    )
    assert status == 202
    svc.get("/healthz")
    time.sleep(0.3)
    lines = [line for line in service_log(svc).splitlines() if " kycflow.access " in line]
    webhook = [line for line in lines if "/webhooks/idwise 202" in line]
    assert webhook and re.search(
        r"kycflow\.access POST /webhooks/idwise 202 \d+\.\dms idwise$", webhook[-1]
    ), webhook
    assert any(re.search(r"GET /healthz 200 \d+\.\dms$", line) for line in lines)
    text = service_log(svc)
    assert "query-secret-91" not in text and "access-log-event" not in text


def test_the_access_log_can_be_turned_off(tmp_path: Path):
    quiet = Service(tmp_path / "quiet.db", {**CREDENTIALS, "KYCFLOW_ACCESS_LOG": "false"}).start()
    try:
        assert quiet.get("/healthz")[0] == 200
    finally:
        quiet.stop()
    assert "kycflow.access" not in service_log(quiet)


def test_the_service_still_answers_and_stores_after_all_of_this(svc):
    body, headers = idwise("healthy-at-the-end")
    assert_accepted(send(svc, "idwise", body, headers))
    assert "Traceback" not in service_log(svc)
    with closing(socket.create_connection(("127.0.0.1", svc.port), timeout=5)):
        pass
