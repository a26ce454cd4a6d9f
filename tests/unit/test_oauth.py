"""Our OAuth2 client-credentials endpoint for Ondato (ingest.oauth, RFC 6749 §4.4, §5.2)."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
from typing import Any

import pytest
from multidict import MultiDict

from ingest.oauth import OAuthError, issue_token, verify_token
from ingest.settings import IngestSettings

NOW = 1_700_000_000.5
SETTINGS = IngestSettings(
    ondato_client_id="ondato-client", ondato_client_secret="cs-123", token_ttl=600
)
GRANT = {"grant_type": "client_credentials"}


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(settings: IngestSettings = SETTINGS, now: float = NOW) -> str:
    answer = issue_token(settings, GRANT, basic("ondato-client", "cs-123"), now)
    return str(answer["access_token"])


def forge(claims: Any, key: str = "cs-123") -> str:
    """A token built by hand, as someone who knows the secret would."""
    payload = json.dumps(claims).encode() if not isinstance(claims, bytes) else claims
    return b64(payload) + "." + b64(hmac.new(key.encode(), payload, hashlib.sha256).digest())


def refused(
    form: Any, authorization: str | None, settings: IngestSettings = SETTINGS
) -> OAuthError:
    with pytest.raises(OAuthError) as caught:
        issue_token(settings, form, authorization, NOW)
    return caught.value


def test_a_client_authenticated_by_basic_gets_a_bearer_token() -> None:
    answer = issue_token(SETTINGS, GRANT, basic("ondato-client", "cs-123"), NOW)
    assert answer["token_type"] == "Bearer"
    assert answer["expires_in"] == 600 and isinstance(answer["expires_in"], int)
    assert verify_token(SETTINGS, str(answer["access_token"]), NOW)


def test_a_client_authenticated_by_form_fields_gets_a_bearer_token() -> None:
    form = {**GRANT, "client_id": "ondato-client", "client_secret": "cs-123", "scope": "x"}
    answer = issue_token(SETTINGS, form, None, NOW)
    assert verify_token(SETTINGS, str(answer["access_token"]), NOW)


def test_basic_credentials_may_be_form_encoded_as_rfc_6749_asks() -> None:
    settings = dataclasses.replace(SETTINGS, ondato_client_secret="a+b%c d")
    for secret in ("a+b%c d", "a%2Bb%25c+d"):
        answer = issue_token(settings, GRANT, basic("ondato-client", secret), NOW)
        assert verify_token(settings, str(answer["access_token"]), NOW)


def test_the_token_carries_its_expiry_client_and_a_fresh_nonce() -> None:
    first, second = token(), token()
    assert first != second
    claims = json.loads(base64.urlsafe_b64decode(first.split(".")[0] + "=="))
    assert claims["exp"] == 1_700_000_600 and claims["cid"] == "ondato-client"
    assert claims["n"] != json.loads(base64.urlsafe_b64decode(second.split(".")[0] + "=="))["n"]


def test_a_token_is_valid_until_its_expiry_and_not_after() -> None:
    issued = token()
    assert verify_token(SETTINGS, issued, NOW + 599)
    assert not verify_token(SETTINGS, issued, 1_700_000_600)
    assert not verify_token(SETTINGS, issued, NOW + 10_000)


@pytest.mark.parametrize(
    "authorization,form",
    [
        (basic("ondato-client", "wrong"), GRANT),
        (basic("someone-else", "cs-123"), GRANT),
        (None, {**GRANT, "client_id": "ondato-client", "client_secret": "wrong"}),
        (None, {**GRANT, "client_id": "ondato-client"}),
        (None, GRANT),
        ("Basic %%%", GRANT),
        ("Bearer cs-123", GRANT),
        (basic("ondato-client", "wrong"), {"grant_type": "password"}),
    ],
)
def test_a_client_that_fails_authentication_gets_401_and_no_token(
    authorization: str | None, form: dict[str, str]
) -> None:
    error = refused(form, authorization)
    assert (error.status, error.error) == (401, "invalid_client")
    assert "cs-123" not in str(error) and "wrong" not in str(error)


def test_without_oauth2_configured_every_client_is_invalid() -> None:
    basic_only = IngestSettings(ondato_username="ondato", ondato_password="pw")
    for settings in (IngestSettings(), basic_only):
        error = refused(GRANT, basic("ondato", "pw"), settings)
        assert (error.status, error.error) == (401, "invalid_client")


@pytest.mark.parametrize(
    "form,authorization,error",
    [
        ({}, basic("ondato-client", "cs-123"), "invalid_request"),
        ({"grant_type": ""}, basic("ondato-client", "cs-123"), "invalid_request"),
        ({"grant_type": "password"}, basic("ondato-client", "cs-123"), "unsupported_grant_type"),
        ({**GRANT, "client_secret": "cs-123"}, basic("ondato-client", "cs-123"), "invalid_request"),
        (
            MultiDict([*GRANT.items(), *GRANT.items()]),
            basic("ondato-client", "cs-123"),
            "invalid_request",
        ),
    ],
)
def test_a_malformed_request_gets_400_with_the_rfc_error_code(
    form: Any, authorization: str, error: str
) -> None:
    refusal = refused(form, authorization)
    assert (refusal.status, refusal.error) == (400, error)
    assert refusal.body() == {"error": error, "error_description": refusal.description}


def test_rotating_the_client_secret_revokes_issued_tokens() -> None:
    issued = token()
    assert not verify_token(
        dataclasses.replace(SETTINGS, ondato_client_secret="cs-456"), issued, NOW
    )


def test_a_token_for_another_client_id_is_refused() -> None:
    issued = token()
    assert not verify_token(dataclasses.replace(SETTINGS, ondato_client_id="other"), issued, NOW)
    assert not verify_token(SETTINGS, forge({"exp": 1_800_000_000, "cid": "other", "n": "x"}), NOW)


def test_a_tampered_token_is_refused() -> None:
    payload, mac = token().split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    later = b64(json.dumps({**claims, "exp": claims["exp"] + 10**6}).encode())
    flipped = mac[:-2] + ("AA" if mac[-2:] != "AA" else "BA")
    for tampered in (f"{later}.{mac}", f"{payload}.{flipped}", forge(claims, key="guess")):
        assert not verify_token(SETTINGS, tampered, NOW)


ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def respellings(part: str) -> list[str]:
    """The same bytes spelled with other values in the last character's unused bits."""
    decoded = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    others = (part[:-1] + c for c in ALPHABET if c != part[-1])
    return [o for o in others if base64.urlsafe_b64decode(o + "=" * (-len(o) % 4)) == decoded]


def test_only_the_canonical_spelling_of_a_token_is_the_token() -> None:
    payload, mac = token().split(".")
    variants = [f"{payload}.{m}" for m in respellings(mac)]
    variants += [f"{p}.{mac}" for p in respellings(payload)]
    assert variants  # a 32-byte MAC leaves two bits free in its last character
    for variant in variants:
        assert not verify_token(SETTINGS, variant, NOW), variant
    assert verify_token(SETTINGS, f"{payload}.{mac}", NOW)


@pytest.mark.parametrize(
    "claims",
    [
        b"not json",
        b"\xff\xfe",
        b"[" * 100_000,
        [1_800_000_000, "ondato-client"],
        {"exp": "1800000000", "cid": "ondato-client"},
        {"exp": True, "cid": "ondato-client"},
        {"exp": 1_800_000_000},
        {"exp": 1_800_000_000.0, "cid": "ondato-client"},
    ],
)
def test_a_correctly_signed_token_with_bad_claims_is_refused(claims: Any) -> None:
    assert not verify_token(SETTINGS, forge(claims), NOW)


@pytest.mark.parametrize(
    "garbage",
    ["", ".", "..", "a.b", "a.b.c", "ünï.cödé", "a b.c d", "====.====", "x" * 5000, None, 42],
)
def test_verifying_garbage_returns_false_and_never_raises(garbage: Any) -> None:
    assert not verify_token(SETTINGS, garbage, NOW)


def test_verification_fails_closed_when_oauth2_is_not_configured() -> None:
    issued = token()
    assert not verify_token(IngestSettings(), issued, NOW)
    assert not verify_token(dataclasses.replace(SETTINGS, ondato_client_secret=""), issued, NOW)
