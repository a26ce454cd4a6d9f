"""The raw envelope ingest stores (design.md §3) and its dedup keys (§5.1)."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest

from statemachines import RawEnvelope, replay
from statemachines.envelope import envelope_from_json, envelope_to_json
from tests.payloads import deliver, idenfy_identification, idwise, ondato_kyc

RECEIVED = "2026-11-22T10:00:00.000000Z"
CREDENTIALS = {
    "Authorization": "Basic b25kYXRvOnMzY3JldA==",
    "Proxy-Authorization": "Bearer proxy-secret",
    "Cookie": "session=cookie-secret",
    "X-Api-Key": "api-key-secret",
    "X-IDWise-Secret": "custom-header-secret",
}
USEFUL = {
    "Content-Type": "application/json",
    "Idenfy-Event-Type": "IDENTIFICATION_AUTO_FINISHED",
    "Idenfy-Signature": "ab" * 32,
    "ondato-signature": "t=1700000000,s=" + "cd" * 32,
}


def receive(provider: str, body: bytes, headers: Any = None) -> RawEnvelope:
    return RawEnvelope.receive(provider, body, headers or {}, RECEIVED)


def record(**changes: Any) -> bytes:
    """A stored envelope record with some fields replaced (None: removed)."""
    doc = json.loads(envelope_to_json(receive("idwise", b"{}").at(3)))
    doc.update(changes)
    return json.dumps({k: v for k, v in doc.items() if v is not None}).encode()


class TestHeadersAreAllowListed:
    def test_credential_headers_are_never_kept(self) -> None:
        envelope = receive("ondato", b"{}", {**CREDENTIALS, **USEFUL})
        kept = {name.lower() for name in envelope.headers}
        assert not kept & {name.lower() for name in CREDENTIALS}
        wire = envelope_to_json(envelope)
        assert not any(secret.encode() in wire for secret in CREDENTIALS.values())

    def test_event_type_content_type_and_signatures_are_kept(self) -> None:
        envelope = receive("idenfy", b"{}", {**CREDENTIALS, **USEFUL})
        assert dict(envelope.headers) == {name.lower(): value for name, value in USEFUL.items()}

    def test_headers_given_as_pairs_are_filtered_the_same_way(self) -> None:
        pairs = [("AUTHORIZATION", "Bearer t"), ("IDENFY-EVENT-TYPE", "COMPANY_SUBMIT")]
        assert dict(receive("idenfy", b"{}", pairs).headers) == {
            "idenfy-event-type": "COMPANY_SUBMIT"
        }

    def test_header_lookup_ignores_case(self) -> None:
        envelope = receive("idenfy", b"{}", {"Idenfy-Event-Type": "COMPANY_DELETE"})
        assert envelope.header("IDENFY-EVENT-TYPE") == envelope.header("idenfy-event-type")
        assert envelope.header("Authorization") is None

    def test_the_record_keeps_bytes_hash_and_ingest_facts(self) -> None:
        body = b'{"a": 1}'
        envelope = RawEnvelope.receive(
            "idwise", body, {}, RECEIVED, auth_method="bearer", remote_addr="198.51.100.7"
        )
        assert (envelope.body, envelope.body_sha256) == (body, hashlib.sha256(body).hexdigest())
        assert (envelope.auth_method, envelope.remote_addr) == ("bearer", "198.51.100.7")
        assert (envelope.received_at, envelope.offset, envelope.duplicate) == (RECEIVED, -1, False)
        stored = envelope.at(42, duplicate=True)
        assert (stored.offset, stored.duplicate, stored.body) == (42, True, body)


class TestDedupKeys:
    def test_idwise_key_is_the_event_id(self) -> None:
        envelope = deliver(idwise("Finished Journey", event_id="evt-9", systemDecision="Refer"))
        assert envelope.dedup_key == "idwise:event:evt-9"

    def test_idwise_retry_with_the_same_event_id_has_the_same_key(self) -> None:
        first = idwise("Finished Journey", event_id="evt-9", systemDecision="Refer")
        retry = json.dumps(json.loads(first[2]), indent=1).encode()
        assert deliver(first).dedup_key == receive("idwise", retry).dedup_key

    def test_idwise_legacy_body_without_event_id_is_keyed_by_its_content(self) -> None:
        body = b'{"event": "Finished Journey", "body": {"journeyId": "j-1"}}'
        canonical = b'{"body":{"journeyId":"j-1"},"event":"Finished Journey"}'
        envelope = receive("idwise", body)
        assert envelope.dedup_key == f"idwise:content:{hashlib.sha256(canonical).hexdigest()}"

    def test_idwise_legacy_body_reserialised_has_the_same_key(self) -> None:
        body = b'{"event": "Finished Journey", "body": {"journeyId": "j-1", "referenceNo": "r"}}'
        again = b'{"body":{"referenceNo":"r","journeyId":"j-1"},\n "event":"Finished Journey"}'
        assert receive("idwise", body).dedup_key == receive("idwise", again).dedup_key

    @pytest.mark.parametrize("depth", [150, 100_000])
    def test_idwise_deeply_nested_body_still_gets_a_key(self, depth: int) -> None:
        body = b'{"event": "x", "body": ' + b"[" * depth + b"]" * depth + b"}"
        key = receive("idwise", body).dedup_key
        assert key.startswith(("idwise:content:", "idwise:sha256:")), key

    @pytest.mark.parametrize("pascal", [False, True])
    def test_ondato_key_is_the_webhook_id_in_any_casing(self, pascal: bool) -> None:
        envelope = deliver(ondato_kyc("Approved", webhook_id="wh-77", pascal=pascal))
        assert envelope.dedup_key == "ondato:webhook:wh-77"

    def test_ondato_redelivery_with_the_same_webhook_id_has_the_same_key(self) -> None:
        first = ondato_kyc("Approved", webhook_id="wh-77", created="2026-11-22T10:00:00Z")
        again = ondato_kyc("Approved", webhook_id="wh-77", created="2026-11-22T10:00:00.0Z")
        assert deliver(first).dedup_key == deliver(again).dedup_key

    def test_idenfy_key_is_the_hash_of_the_signed_body(self) -> None:
        envelope = deliver(idenfy_identification("identification_auto_finished"))
        assert envelope.dedup_key == f"idenfy:sha256:{envelope.body_sha256}"

    def test_idenfy_same_body_under_another_event_type_is_the_same_delivery(self) -> None:
        # The signature covers the body, not the Idenfy-Event-Type header (issue 10 §2).
        auto = deliver(idenfy_identification("IDENTIFICATION_AUTO_FINISHED"))
        legacy = deliver(idenfy_identification("IDENTIFICATION"))
        assert auto.body == legacy.body
        assert auto.dedup_key == legacy.dedup_key

    @pytest.mark.parametrize("body", [b"", b"[]"], ids=["empty body", "json array"])
    def test_idenfy_unreadable_body_is_keyed_by_its_bytes_alone(self, body: bytes) -> None:
        face = receive("idenfy", body, {"Idenfy-Event-Type": "FACIAL_AUTHENTICATION"})
        age = receive("idenfy", body, {"Idenfy-Event-Type": "AGE_ESTIMATION"})
        assert face.dedup_key == age.dedup_key == f"idenfy:sha256:{face.body_sha256}"

    @pytest.mark.parametrize("provider", ["idenfy", "ondato", "idwise"])
    def test_unreadable_body_still_gets_a_key(self, provider: str) -> None:
        envelope = receive(provider, b"\xff\xfe not json")
        assert envelope.dedup_key.startswith(f"{provider}:")
        assert envelope.dedup_key.endswith(envelope.body_sha256)


class TestJsonRoundTrip:
    @pytest.mark.parametrize(
        "body",
        [b'{"scanRef": "x"}', b"\xff\xfe\x00\x80 not utf-8", b"", bytes(range(256))],
        ids=["json", "invalid utf-8", "empty", "every byte"],
    )
    def test_envelope_survives_the_wire_form(self, body: bytes) -> None:
        headers = {"Idenfy-Event-Type": "IDENTIFICATION", "Authorization": "Bearer x"}
        envelope = RawEnvelope.receive(
            "idenfy", body, headers, RECEIVED, auth_method="hmac", remote_addr="192.0.2.1"
        ).at(17, duplicate=True)
        back = envelope_from_json(envelope_to_json(envelope))
        assert back == envelope
        assert (back.body, back.offset, back.duplicate) == (body, 17, True)
        assert dict(back.headers) == {"idenfy-event-type": "IDENTIFICATION"}

    def test_wire_form_is_json_with_a_base64_body(self) -> None:
        envelope = receive("idwise", b"\x00\xff").at(5)
        doc = json.loads(envelope_to_json(envelope))
        assert base64.b64decode(doc["body"]) == b"\x00\xff"
        assert (doc["provider"], doc["offset"], doc["dedup_key"]) == (
            "idwise",
            5,
            envelope.dedup_key,
        )

    def test_a_record_without_the_optional_fields_reads_with_defaults(self) -> None:
        back = envelope_from_json(
            record(auth_method=None, remote_addr=None, offset=None, duplicate=None)
        )
        assert (back.auth_method, back.remote_addr, back.offset, back.duplicate) == (
            "",
            "",
            -1,
            False,
        )

    @pytest.mark.parametrize(
        "data",
        [
            b"not json",
            b"\xff\xfe",
            b"[]",
            b"[" * 100_000 + b"]" * 100_000,
            record(body=None),
            record(headers=None),
            record(body="***not base64***"),
            record(body=5),
            record(headers=5),
            record(offset="three"),
        ],
        ids=[
            "not json",
            "invalid utf-8",
            "json array",
            "100000 nested lists",
            "no body",
            "no headers",
            "body not base64",
            "body not a string",
            "headers not an object",
            "offset not an integer",
        ],
    )
    def test_malformed_record_raises_value_error(self, data: bytes) -> None:
        with pytest.raises(ValueError):
            envelope_from_json(data)

    @pytest.mark.parametrize("field", ["provider", "received_at", "dedup_key"])
    def test_record_with_a_null_required_field_raises_value_error(self, field: str) -> None:
        doc = json.loads(record())
        doc[field] = None
        with pytest.raises(ValueError):
            envelope_from_json(json.dumps(doc).encode())


class TestUndecodableHeaders:
    def test_lone_surrogates_from_the_http_server_become_valid_utf8(self) -> None:
        # aiohttp decodes undecodable header bytes with surrogateescape.
        headers = {"Idenfy-Event-Type": "IDENTIFICATION\udcff", "Content-Type": "x\udc80"}
        body = b'{"scanRef": "scan-1"}'
        env = RawEnvelope.receive("idenfy", body, headers, "2026-11-22T10:00:00.000000Z").at(1)
        assert env.headers["idenfy-event-type"] == "IDENTIFICATION?"
        assert envelope_from_json(envelope_to_json(env)) == env
        state = replay([env])["idenfy/kyc/scan-1"]  # an unknown type, kept in history
        assert (state.status, state.version) == (None, 1)
