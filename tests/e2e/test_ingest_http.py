"""Ingest over real HTTP against a real `kycflow serve` (design.md §6, §7).

Every provider's authentication accepted and refused as it should, fail-closed defaults, the
IP allow-list and its proxy trust, bad and hostile input, a slow client, and concurrent
copies of one delivery. Nothing is mocked: requests go over loopback sockets, and what was
stored is read back from the SQLite files the service writes.
"""

from __future__ import annotations

import gzip
import hashlib
import hmac
import http.client
import json
import socket
import sqlite3
import threading
import time
from base64 import b64encode
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, suppress
from pathlib import Path
from typing import Any

import pytest

from tests import payloads as p
from tests.e2e.service import CREDENTIALS, Service, signed

Headers = dict[str, str] | list[tuple[str, str]]
JSON = {"Content-Type": "application/json"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
CLIENT = (CREDENTIALS["KYCFLOW_ONDATO_CLIENT_ID"], CREDENTIALS["KYCFLOW_ONDATO_CLIENT_SECRET"])
GRANT = b"grant_type=client_credentials"


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Service]]:
    """Start a service with a custom environment (stopped at teardown)."""
    started: list[Service] = []

    def start_(env: dict[str, str]) -> Service:
        started.append(Service(tmp_path / f"custom-{len(started)}.db", env).start())
        return started[-1]

    yield start_
    for svc in started:
        if svc.process is not None:
            svc.stop()


# --- helpers ----------------------------------------------------------------------------
def post(svc: Service, path: str, body: bytes, headers: Headers = ()) -> tuple[int, Any]:
    """POST exactly these headers (urllib would add a Content-Type; repeats are allowed).
    Returns the status and the JSON answer (the raw bytes if it is not JSON)."""
    conn = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=10)
    with closing(conn):
        conn.putrequest("POST", path, skip_accept_encoding=True)
        for name, value in headers.items() if isinstance(headers, dict) else headers:
            conn.putheader(name, value)
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        raw = response.read()
    try:
        return response.status, json.loads(raw)
    except ValueError:
        return response.status, raw


def hook(svc: Service, provider: str, body: bytes, headers: Headers = ()) -> tuple[int, Any]:
    return post(svc, f"/webhooks/{provider}", body, headers)


def authed(svc: Service, provider: str, body: bytes, headers: dict[str, str] | None = None):
    """POST with the provider's valid credentials (replacing any placeholder)."""
    return hook(svc, provider, body, {**(headers or {}), **signed(provider, body)})


def basic(user: str, password: str) -> str:
    return "Basic " + b64encode(f"{user}:{password}".encode()).decode()


def idenfy_signature(key: str, body: bytes) -> dict[str, str]:
    return {"Idenfy-Signature": hmac.new(key.encode(), body, hashlib.sha256).hexdigest()}


def assert_accepted(answer: tuple[int, Any], duplicate: bool = False) -> int:
    status, doc = answer
    assert status == 202, doc
    assert set(doc) == {"offset", "duplicate"}, doc
    assert type(doc["offset"]) is int and doc["duplicate"] is duplicate, doc
    return int(doc["offset"])


def assert_refused(answer: tuple[int, Any], status: int) -> dict[str, Any]:
    """`status` with a JSON reason; returns the JSON answer."""
    assert answer[0] == status, answer
    assert isinstance(answer[1], dict) and answer[1].get("error"), answer
    return dict(answer[1])


def select(path: Path, sql: str) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:  # read-only
        return [tuple(row) for row in db.execute(sql)]


def raw_log(svc: Service, columns: str = '"offset", dedup_key, duplicate') -> list[tuple[Any, ...]]:
    """These columns of every stored delivery, in offset order."""
    raw = svc.db.with_name(svc.db.stem + ".raw.db")
    return select(raw, f'SELECT {columns} FROM raw_log ORDER BY "offset"')


def token(svc: Service, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    return post(svc, "/oauth/token", body, {**FORM, **headers})


def assert_still_healthy(svc: Service, scan_ref: str = "healthy-after-all") -> None:
    assert svc.get("/healthz")[0] == 200
    assert_accepted(svc.send(p.idenfy_identification(scan_ref=scan_ref)))
    svc.wait_projected()
    status, doc = svc.get(f"/verifications/idenfy/kyc/{scan_ref}")
    assert (status, doc["status"]) == (200, "approved"), doc


def finished(event_id: str, journey: str, **extra: Any) -> tuple[dict[str, str], bytes]:
    _, headers, body = p.idwise(
        "Finished Journey", event_id=event_id, journey=journey, systemDecision="Complete", **extra
    )
    return headers, body


# --- 1. authentication, per provider --------------------------------------------------
def test_an_idenfy_webhook_with_a_valid_hmac_is_accepted_once_then_as_a_duplicate(service):
    webhook = p.idenfy_identification(scan_ref="scan-auth")
    first = assert_accepted(service.send(webhook))
    assert assert_accepted(service.send(webhook), duplicate=True) > first


def test_idenfy_accepts_every_configured_key_during_rotation(start):
    svc = start({"KYCFLOW_IDENFY_SIGNING_KEY": "old-key,new-key"})
    for n, key in enumerate(("old-key", "new-key")):
        _, headers, body = p.idenfy_identification(scan_ref=f"rotated-{n}")
        assert_accepted(hook(svc, "idenfy", body, {**headers, **idenfy_signature(key, body)}))
    _, headers, body = p.idenfy_identification(scan_ref="rotated-x")
    assert_refused(hook(svc, "idenfy", body, {**headers, **idenfy_signature("other", body)}), 401)


def test_idenfy_refuses_a_wrong_or_missing_signature_with_a_json_reason(service):
    _, headers, body = p.idenfy_identification(scan_ref="scan-refused")
    del headers["Idenfy-Signature"]
    for bad in (
        idenfy_signature("wrong-key", body),
        signed("idenfy", body + b" "),  # the right key over other bytes
        {"Idenfy-Signature": "not-hex-at-all"},
        {"Idenfy-Signature": ""},
        {},
    ):
        assert_refused(hook(service, "idenfy", body, {**headers, **bad}), 401)


def test_ondato_accepts_basic_credentials_and_refuses_a_wrong_password(service):
    _, headers, body = p.ondato_idv("Pending", webhook_id="basic-1")
    user, password = CREDENTIALS["KYCFLOW_ONDATO_USERNAME"], CREDENTIALS["KYCFLOW_ONDATO_PASSWORD"]
    good = {**headers, "Authorization": basic(user, password)}
    assert_accepted(hook(service, "ondato", body, good))
    wrong = {**headers, "Authorization": basic(user, password + "x")}
    assert_refused(hook(service, "ondato", body, wrong), 401)


def test_ondato_oauth2_tokens_from_basic_or_form_client_auth_are_accepted_as_bearer(service):
    by_basic = token(service, GRANT, {"Authorization": basic(*CLIENT)})
    form_auth = f"&client_id={CLIENT[0]}&client_secret={CLIENT[1]}".encode()
    by_form = token(service, GRANT + form_auth, {})
    for n, (status, doc) in enumerate((by_basic, by_form)):
        assert status == 200, doc
        assert doc["token_type"] == "Bearer" and isinstance(doc["access_token"], str), doc
        assert type(doc["expires_in"]) is int and doc["expires_in"] > 0, doc
        _, headers, body = p.ondato_idv("Pending", webhook_id=f"oauth-{n}")
        bearer = {**headers, "Authorization": f"Bearer {doc['access_token']}"}
        assert_accepted(hook(service, "ondato", body, bearer))


def test_a_wrong_client_secret_gets_401_and_no_token(service):
    wrong = (CLIENT[0], CLIENT[1] + "x")
    by_form = f"&client_id={wrong[0]}&client_secret={wrong[1]}".encode()
    for answer in (
        token(service, GRANT, {"Authorization": basic(*wrong)}),
        token(service, GRANT + by_form, {}),
    ):
        assert "access_token" not in assert_refused(answer, 401)


def test_ondato_refuses_a_garbage_bearer_token(service):
    _, headers, body = p.ondato_idv("Pending", webhook_id="garbage-bearer")
    real = token(service, GRANT, {"Authorization": basic(*CLIENT)})[1]["access_token"]
    tampered = real[:-9] + ("A" if real[-9] != "A" else "B") + real[-8:]  # a MAC character
    for garbage in ("garbage", "a.b", "", "x" * 5000, tampered):
        bearer = {**headers, "Authorization": f"Bearer {garbage}"}
        assert_refused(hook(service, "ondato", body, bearer), 401)


def ondato_from(svc: Service, forwarded_for: str | None, webhook_id: str) -> tuple[int, Any]:
    _, headers, body = p.ondato_idv("Pending", webhook_id=webhook_id)
    forwarded = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    return authed(svc, "ondato", body, {**headers, **forwarded})


def test_the_ondato_allow_list_honours_x_forwarded_for_from_a_trusted_proxy(start):
    allow = {"KYCFLOW_ONDATO_ALLOWED_IPS": "10.0.0.0/8"}
    svc = start({**CREDENTIALS, **allow, "KYCFLOW_TRUSTED_PROXIES": "127.0.0.1/32"})
    assert_accepted(ondato_from(svc, "10.1.2.3", "ip-allowed"))
    assert_refused(ondato_from(svc, "192.0.2.1", "ip-outside"), 403)
    assert_refused(ondato_from(svc, None, "ip-proxy-itself"), 403)  # 127.0.0.1 not allowed


def test_a_service_without_trusted_proxies_ignores_a_spoofed_x_forwarded_for(start):
    svc = start({**CREDENTIALS, "KYCFLOW_ONDATO_ALLOWED_IPS": "10.0.0.0/8"})
    assert_refused(ondato_from(svc, "10.1.2.3", "ip-spoofed"), 403)


def test_idwise_accepts_its_bearer_token_and_refuses_a_wrong_one(service):
    headers, body = finished("idwise-auth", "journey-auth")
    assert_accepted(authed(service, "idwise", body, headers))
    wrong = {**headers, "Authorization": f"Bearer {CREDENTIALS['KYCFLOW_IDWISE_TOKEN']}x"}
    assert_refused(hook(service, "idwise", body, wrong), 401)
    assert_refused(hook(service, "idwise", body, headers), 401)  # no credentials at all


def test_a_service_configured_only_for_idenfy_fails_closed_for_ondato_and_idwise(start):
    svc = start({"KYCFLOW_IDENFY_SIGNING_KEY": CREDENTIALS["KYCFLOW_IDENFY_SIGNING_KEY"]})
    assert not svc.db.with_suffix(".credentials.json").exists()  # nothing was generated
    assert_accepted(svc.send(p.idenfy_identification(scan_ref="only-idenfy")))
    for provider, headers, body in (
        p.ondato_idv("Pending", webhook_id="closed"),
        p.idwise("Finished Journey", event_id="closed", systemDecision="Complete"),
    ):
        assert_refused(authed(svc, provider, body, headers), 401)
    answer = token(svc, GRANT, {"Authorization": basic(*CLIENT)})
    assert "access_token" not in assert_refused(answer, 401)
    assert [row[0] for row in raw_log(svc)] == [1]


def test_an_unknown_provider_path_is_404(service):
    headers, body = finished("unknown-provider", "j")
    assert_refused(hook(service, "acme", body, {**headers, **signed("idwise", body)}), 404)


def test_a_mistyped_route_or_method_gets_a_json_reason(service):
    """aiohttp's own 404 and 405 are plain text; ours say why, as every other refusal."""
    headers, body = finished("mistyped", "j")
    missing = assert_refused(post(service, "/webhook/idwise", body, headers), 404)
    assert "/webhooks/{provider}" in missing["error"]
    status, _, answer = service.request("GET", "/webhooks/idwise")
    assert (status, json.loads(answer)["error"]) == (405, "GET is not allowed here; allowed: POST")
    status, headers, _ = service.request("PUT", "/oauth/token", b"")
    assert (status, headers["Allow"]) == (405, "POST")
    assert service.request("GET", "/no/such/thing")[0] == 404
    # The console's pages keep a browser's plain answer.
    status, headers, _ = service.request("GET", "/ui/no-such-page")
    assert status == 404 and not headers["Content-Type"].startswith("application/json")


# --- 2. nothing unauthenticated is stored ---------------------------------------------
def test_rejected_requests_store_nothing_in_the_raw_log(service):
    assert_accepted(service.send(p.idenfy_identification(scan_ref="baseline")))
    before = raw_log(service)
    headers, body = finished("rejected", "journey-rejected")
    bearer = signed("idwise", body)["Authorization"]
    huge = b" " * (1024 * 1024 + 1)
    for provider, extra, status, sent in (
        ("idenfy", {"Idenfy-Signature": "0" * 64}, 401, body),
        ("idenfy", {}, 401, body),
        ("ondato", {"Authorization": basic("ondato", "wrong")}, 401, body),
        ("ondato", {"Authorization": "Bearer garbage"}, 401, body),
        ("ondato", {}, 401, body),
        ("idwise", {"Authorization": "Bearer wrong"}, 401, body),
        ("idwise", [("Authorization", bearer), ("Authorization", bearer)], 401, body),
        ("idwise", {}, 401, body),
        ("acme", {"Authorization": bearer}, 404, body),
        ("idwise", signed("idwise", huge), 413, huge),
    ):
        pairs = extra.items() if isinstance(extra, dict) else extra  # keeps repeated headers
        assert_refused(hook(service, provider, sent, [*headers.items(), *pairs]), status)
    assert raw_log(service) == before


# --- 3. bad input ---------------------------------------------------------------------
def test_authenticated_unreadable_bodies_are_accepted_and_quarantined(service):
    unknown_type = b'{"id": "w-unknown", "type": "Bogus.Type", "payload": {"id": "x"}}'
    deep = b"[" * 100_000 + b"]" * 100_000
    offsets = [
        assert_accepted(authed(service, provider, body, JSON))
        for provider, bodies in (
            ("idwise", (b"not json", b"\xff\xfe{\x80}", b"[1, 2, 3]", b"", deep)),
            ("ondato", (b"{not json", unknown_type)),  # Ondato quarantines unknown types
            ("idenfy", (b"\xc3\x28", b'"just a string"')),
        )
        for body in bodies
    ]
    service.wait_projected()
    reasons = dict(select(service.db, 'SELECT "offset", reason FROM quarantine'))
    assert set(offsets) <= set(reasons), (offsets, reasons)
    assert_still_healthy(service)


def test_unknown_event_types_are_kept_as_unknown_history_events(service):
    _, headers, body = p.idenfy_identification(scan_ref="scan-unknown")
    headers["Idenfy-Event-Type"] = "SOMETHING_NEW"
    idenfy = assert_accepted(authed(service, "idenfy", body, headers))
    _, headers, body = p.idwise("Brand New Event", event_id="new-1", journey="journey-unknown")
    idwise = assert_accepted(authed(service, "idwise", body, headers))
    service.wait_projected()
    expected = {"idenfy/kyc/scan-unknown": idenfy, "idwise/kyc/journey-unknown": idwise}
    for subject, offset in expected.items():
        events = service.get(f"/verifications/{subject}/history")[1]["events"]
        assert [(e["offset"], e["effect"]) for e in events] == [(offset, "unknown")], events
    assert_still_healthy(service)


def test_a_900_kb_body_under_the_limit_is_accepted_and_projected(service):
    headers, body = finished("big-1", "journey-big", note="x" * 900_000)
    assert 900_000 < len(body) < 1024 * 1024
    assert_accepted(authed(service, "idwise", body, headers))
    service.wait_projected()
    assert service.get("/verifications/idwise/kyc/journey-big")[1]["status"] == "approved"


def test_a_body_over_one_mebibyte_is_refused_with_413_with_or_without_content_length(service):
    body = b" " * (1024 * 1024 + 64)
    assert_refused(hook(service, "idwise", body, signed("idwise", body)), 413)
    with closing(http.client.HTTPConnection("127.0.0.1", service.port, timeout=10)) as conn:
        conn.putrequest("POST", "/webhooks/idwise", skip_accept_encoding=True)
        conn.putheader("Authorization", signed("idwise", body)["Authorization"])
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        with suppress(OSError):  # the server may stop reading once the limit is passed
            conn.send(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
        response = conn.getresponse()
        assert_refused((response.status, json.loads(response.read())), 413)
    assert raw_log(service) == []
    assert_still_healthy(service)


def test_a_custom_body_limit_of_1000_bytes_refuses_a_2_kb_body(start):
    svc = start({**CREDENTIALS, "KYCFLOW_MAX_BODY": "1000"})
    headers, body = finished("limit-2k", "journey-2k", note="x" * 2000)
    assert_refused(authed(svc, "idwise", body, headers), 413)
    headers, body = finished("limit-small", "journey-small")
    assert_accepted(authed(svc, "idwise", body, headers))


def test_missing_or_garbled_headers_get_a_json_4xx_or_are_accepted(service):
    _, body = finished("no-content-type", "journey-no-ct")
    assert_accepted(authed(service, "idwise", body))  # no Content-Type
    _, ondato_headers, ondato_body = p.ondato_idv("Pending", webhook_id="garbled")
    for garbled in ("Basic !!!", "Basic", "Bearer", "Digest abc", "   "):
        answer = hook(service, "ondato", ondato_body, {**ondato_headers, "Authorization": garbled})
        assert_refused(answer, 401)
    signature = signed("idenfy", body)["Idenfy-Signature"]
    for bad in ("zz" * 32, "\xe9" * 64, signature + "00"):
        assert_refused(hook(service, "idenfy", body, {**JSON, "Idenfy-Signature": bad}), 401)
    twice = [("Idenfy-Signature", signature), ("Idenfy-Signature", signature)]
    assert_refused(hook(service, "idenfy", body, twice), 401)
    bearer = signed("idwise", body)["Authorization"]
    twice = [("Authorization", bearer), ("Authorization", bearer)]
    assert "repeated" in assert_refused(hook(service, "idwise", body, twice), 401)["error"]
    spoof = {**signed("idwise", body), "X-Forwarded-For": "\xff, [::1, 999.1.1.1:99999"}
    assert_accepted(hook(service, "idwise", body, spoof), duplicate=True)
    service.wait_projected()
    assert service.get("/verifications/idwise/kyc/journey-no-ct")[1]["status"] == "approved"
    assert_still_healthy(service)


def test_an_undecodable_content_encoding_gets_a_json_4xx_not_a_5xx(service):
    headers, body = finished("encoded", "journey-encoded")
    for encoding in ("gzip", "deflate"):
        extra = {**headers, **signed("idwise", body), "Content-Encoding": encoding}
        assert_refused(hook(service, "idwise", body, extra), 415)  # refused before reading
    assert_still_healthy(service)


def test_a_gzip_encoded_delivery_is_refused_so_stored_bytes_are_always_as_received(service):
    # Decompressing would store (and verify signatures over) bytes other than those sent.
    headers, body = finished("gzipped", "journey-gzip")
    wire = gzip.compress(body)
    answer = authed(service, "idwise", wire, {**headers, "Content-Encoding": "gzip"})
    assert_refused(answer, 415)
    assert raw_log(service, '"offset", body') == []


def test_the_token_endpoint_answers_malformed_forms_with_a_json_4xx(service):
    auth = {"Authorization": basic(*CLIENT)}
    for body, content_type in (
        (b"grant_type=\xff\xfe", FORM["Content-Type"]),
        (b"garbage", "multipart/form-data; boundary=xx"),
        (b"garbage", "multipart/form-data"),
        (GRANT, "application/x-www-form-urlencoded; charset=bogus"),
    ):
        status, doc = token(service, body, {**auth, "Content-Type": content_type})
        assert 400 <= status < 500 and isinstance(doc, dict) and "error" in doc, (status, doc)
    assert_still_healthy(service)


# --- 4. a slow client ------------------------------------------------------------------
def test_a_client_that_stalls_mid_body_gets_408_and_nothing_is_stored(start):
    svc = start({**CREDENTIALS, "KYCFLOW_READ_TIMEOUT": "1"})
    head = (
        "POST /webhooks/idwise HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {CREDENTIALS['KYCFLOW_IDWISE_TOKEN']}\r\n"
        "Content-Length: 100\r\n\r\n"
    )
    began = time.monotonic()
    with socket.create_connection(("127.0.0.1", svc.port), timeout=10) as slow:
        slow.sendall(head.encode() + b'{"event": "Finished Journey", ')
        # The stalled request must not hold up anyone else.
        assert_accepted(svc.send(p.idenfy_identification(scan_ref="while-stalled")))
        try:
            with closing(http.client.HTTPResponse(slow)) as response:
                response.begin()
                assert_refused((response.status, json.loads(response.read())), 408)
        except http.client.RemoteDisconnected:
            pass  # closing without an answer is acceptable too
    assert time.monotonic() - began >= 0.9
    assert [row[0] for row in raw_log(svc)] == [1]  # only the request that was not stalled
    assert_still_healthy(svc)


# --- 5. concurrent copies of one delivery ---------------------------------------------
def test_twenty_concurrent_copies_of_one_delivery_yield_exactly_one_first_delivery(service):
    webhook = ("idwise", *finished("same-event", "journey-race"))
    gate = threading.Barrier(20)

    def deliver(_: int) -> tuple[int, Any]:
        gate.wait(timeout=10)
        return service.send(webhook)

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(deliver, range(20)))
    assert all(status == 202 for status, _ in answers), answers
    firsts = [doc["offset"] for _, doc in answers if doc["duplicate"] is False]
    assert len(firsts) == 1, answers
    offsets = {doc["offset"] for _, doc in answers}
    assert len(offsets) == 20, answers
    key = next(key for offset, key, _ in raw_log(service) if offset == firsts[0])
    copies = {offset: duplicate for offset, k, duplicate in raw_log(service) if k == key}
    assert set(copies) == offsets and sorted(copies.values()) == [0] + [1] * 19, copies
    assert copies[firsts[0]] == 0
    service.wait_projected()
    race = service.get("/verifications/idwise/kyc/journey-race/history")[1]
    assert race["verification"]["status"] == "approved"
    assert [t["offset"] for t in race["transitions"]] == firsts, race
