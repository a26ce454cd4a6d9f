"""Webhook authentication (ingest.auth), client addresses and settings (ingest.settings)."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import ipaddress
from typing import Any

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from ingest.auth import Rejection, authenticate, client_address
from ingest.oauth import issue_token
from ingest.settings import CREDENTIAL_KEYS, IngestSettings

NOW = 1_700_000_000.0
BODY = b'{"scanRef":"scan-1","status":{"overall":"APPROVED"},"final":true}'
ONDATO_IPS = tuple(ipaddress.ip_network(ip) for ip in ("20.31.10.47", "213.226.187.0/24"))
PROXIES = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8"))


def sign(key: str, body: bytes = BODY) -> str:
    return hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def auth(provider: str, headers: Any, settings: IngestSettings, **kw: Any) -> str:
    return authenticate(
        provider, headers, kw.get("body", BODY), kw.get("address", "20.31.10.47"), settings, NOW
    )


def rejected(provider: str, headers: Any, settings: IngestSettings, **kw: Any) -> Rejection:
    with pytest.raises(Rejection) as caught:
        auth(provider, headers, settings, **kw)
    return caught.value


IDENFY = IngestSettings(idenfy_signing_keys=("new-key", "old-key"))
ONDATO_BASIC = IngestSettings(ondato_username="ondato", ondato_password="pa:ss-w0rd")
ONDATO_OAUTH = IngestSettings(ondato_client_id="ondato-client", ondato_client_secret="cs-123")
ONDATO_BOTH = IngestSettings(
    ondato_username="ondato",
    ondato_password="pa:ss-w0rd",
    ondato_client_id="ondato-client",
    ondato_client_secret="cs-123",
    ondato_allowed_networks=ONDATO_IPS,
)
IDWISE = IngestSettings(
    idwise_token="idw-token",
    idwise_username="idwise",
    idwise_password="idw-pass",
    idwise_header=("X-IDWise-Secret", "idw-header"),
)


def bearer_for(settings: IngestSettings, now: float = NOW) -> str:
    form = {"grant_type": "client_credentials"}
    answer = issue_token(settings, form, basic("ondato-client", "cs-123"), now)
    return f"Bearer {answer['access_token']}"


# iDenfy: Idenfy-Signature = hex HMAC-SHA256(key, raw body)


def test_idenfy_accepts_the_rfc_4231_known_answer_signature() -> None:
    settings = IngestSettings(idenfy_signing_keys=("Jefe",))
    known = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    body = b"what do ya want for nothing?"
    assert auth("idenfy", {"Idenfy-Signature": known}, settings, body=body) == "hmac"


@pytest.mark.parametrize("key", ["new-key", "old-key"])
def test_idenfy_accepts_a_signature_by_any_configured_key_during_rotation(key: str) -> None:
    assert auth("idenfy", {"Idenfy-Signature": sign(key)}, IDENFY) == "hmac"


def test_idenfy_accepts_upper_case_hex_and_surrounding_spaces() -> None:
    assert auth("idenfy", {"Idenfy-Signature": f" {sign('new-key').upper()} "}, IDENFY) == "hmac"


@pytest.mark.parametrize("name", ["Idenfy-Signature", "idenfy-signature", "IDENFY-SIGNATURE"])
def test_idenfy_finds_the_signature_header_in_any_casing(name: str) -> None:
    assert auth("idenfy", {name: sign("old-key")}, IDENFY) == "hmac"


def test_idenfy_reads_aiohttp_multidict_headers() -> None:
    headers = CIMultiDictProxy(CIMultiDict({"idenfy-SIGNATURE": sign("new-key")}))
    assert auth("idenfy", headers, IDENFY) == "hmac"


def test_idenfy_rejects_a_signature_by_a_retired_key() -> None:
    reason = rejected("idenfy", {"Idenfy-Signature": sign("retired-key")}, IDENFY)
    assert (reason.status, reason.reason) == (401, "bad signature")


def test_idenfy_rejects_a_signature_over_different_bytes() -> None:
    reformatted = BODY.replace(b":", b": ")
    reason = rejected("idenfy", {"Idenfy-Signature": sign("new-key")}, IDENFY, body=reformatted)
    assert (reason.status, reason.reason) == (401, "bad signature")


@pytest.mark.parametrize(
    "garbage", ["", "zz", sign("new-key")[:-2], sign("new-key") + "00", "é" * 64, "\udcff" * 64]
)
def test_idenfy_rejects_malformed_signatures_without_crashing(garbage: str) -> None:
    assert rejected("idenfy", {"Idenfy-Signature": garbage}, IDENFY).status == 401


def test_idenfy_rejects_a_request_without_signature() -> None:
    reason = rejected("idenfy", {"Content-Type": "application/json"}, IDENFY)
    assert (reason.status, reason.reason) == (401, "missing Idenfy-Signature")


def test_idenfy_rejects_two_signature_headers_even_if_one_is_right() -> None:
    headers = CIMultiDict([("Idenfy-Signature", "00" * 32), ("Idenfy-Signature", sign("new-key"))])
    assert rejected("idenfy", headers, IDENFY).status == 401


def test_idenfy_without_a_signing_key_rejects_everything() -> None:
    for settings in (IngestSettings(), IngestSettings(idenfy_signing_keys=("",))):
        reason = rejected("idenfy", {"Idenfy-Signature": sign("")}, settings)
        assert (reason.status, reason.reason) == (401, "no credentials configured for idenfy")


# Ondato: Basic, or Bearer tokens from our OAuth2 endpoint; optional IP allow-list


def test_ondato_accepts_basic_credentials_whose_password_contains_a_colon() -> None:
    assert auth("ondato", {"Authorization": basic("ondato", "pa:ss-w0rd")}, ONDATO_BASIC) == "basic"


@pytest.mark.parametrize("scheme", ["basic", "BASIC", "  Basic"])
def test_ondato_treats_the_authorization_scheme_case_insensitively(scheme: str) -> None:
    value = basic("ondato", "pa:ss-w0rd").replace("Basic", scheme)
    assert auth("ondato", {"authorization": value}, ONDATO_BASIC) == "basic"


@pytest.mark.parametrize("user,password", [("ondato", "wrong"), ("other", "pa:ss-w0rd")])
def test_ondato_rejects_a_wrong_user_or_password(user: str, password: str) -> None:
    reason = rejected("ondato", {"Authorization": basic(user, password)}, ONDATO_BASIC)
    assert (reason.status, reason.reason) == (401, "bad credentials")


@pytest.mark.parametrize(
    "value",
    [
        "Basic",
        "Basic !!!not-base64!!!",
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Basic " + base64.b64encode(b"\xff\xfe:pa:ss-w0rd").decode(),
        "Basic ünïcode",
        "Basic " + base64.b64encode(b"ondato:pa:ss-w0rd").decode()[:-2],
    ],
)
def test_ondato_rejects_malformed_basic_credentials_with_401(value: str) -> None:
    reason = rejected("ondato", {"Authorization": value}, ONDATO_BASIC)
    assert (reason.status, reason.reason) == (401, "malformed Basic credentials")


def test_ondato_rejects_a_request_without_authorization() -> None:
    reason = rejected("ondato", {}, ONDATO_BASIC)
    assert (reason.status, reason.reason) == (401, "missing Authorization")


def test_ondato_accepts_a_bearer_token_issued_by_our_token_endpoint() -> None:
    assert auth("ondato", {"Authorization": bearer_for(ONDATO_OAUTH)}, ONDATO_OAUTH) == "oauth2"


def test_ondato_rejects_an_expired_or_forged_bearer_token() -> None:
    expired = bearer_for(ONDATO_OAUTH, now=NOW - ONDATO_OAUTH.token_ttl)
    for value in (expired, "Bearer not-a-token", "Bearer cs-123"):
        reason = rejected("ondato", {"Authorization": value}, ONDATO_OAUTH)
        assert (reason.status, reason.reason) == (401, "invalid or expired token")


def test_ondato_accepts_both_modes_when_both_are_configured() -> None:
    assert auth("ondato", {"Authorization": bearer_for(ONDATO_BOTH)}, ONDATO_BOTH) == "oauth2"
    assert auth("ondato", {"Authorization": basic("ondato", "pa:ss-w0rd")}, ONDATO_BOTH) == "basic"


def test_ondato_rejects_a_scheme_that_is_not_configured() -> None:
    cases = [
        (ONDATO_BASIC, bearer_for(ONDATO_OAUTH)),
        (ONDATO_OAUTH, basic("ondato-client", "cs-123")),
        (ONDATO_BOTH, "Digest username=ondato"),
    ]
    for settings, value in cases:
        reason = rejected("ondato", {"Authorization": value}, settings)
        assert (reason.status, reason.reason) == (401, "unsupported authorization scheme")


@pytest.mark.parametrize("address", ["20.31.10.47", "213.226.187.9", "::ffff:20.31.10.47"])
def test_ondato_accepts_addresses_inside_the_allow_list(address: str) -> None:
    headers = {"Authorization": basic("ondato", "pa:ss-w0rd")}
    assert auth("ondato", headers, ONDATO_BOTH, address=address) == "basic"


@pytest.mark.parametrize("address", ["20.31.10.48", "2001:db8::1", "", "unix-socket"])
def test_ondato_rejects_addresses_outside_the_allow_list_before_credentials(address: str) -> None:
    headers = {"Authorization": basic("ondato", "pa:ss-w0rd")}
    reason = rejected("ondato", headers, ONDATO_BOTH, address=address)
    assert (reason.status, reason.reason) == (403, "address not allowed")


def test_ondato_ignores_a_spoofed_forwarded_for_from_an_untrusted_peer() -> None:
    headers = {"Authorization": basic("ondato", "pa:ss-w0rd"), "X-Forwarded-For": "20.31.10.47"}
    address = client_address("198.51.100.7", headers, PROXIES)
    assert rejected("ondato", headers, ONDATO_BOTH, address=address).status == 403


def test_ondato_without_credentials_rejects_everything() -> None:
    half = IngestSettings(ondato_username="ondato", ondato_client_secret="cs-123")
    for settings in (IngestSettings(), half, IngestSettings(ondato_allowed_networks=ONDATO_IPS)):
        reason = rejected("ondato", {"Authorization": basic("ondato", "")}, settings)
        assert (reason.status, reason.reason) == (401, "no credentials configured for ondato")


# IDWise: Bearer token, Basic, or a custom header; any configured one suffices


@pytest.mark.parametrize(
    "headers,method",
    [
        ({"Authorization": "Bearer idw-token"}, "bearer"),
        ({"authorization": "bearer  idw-token "}, "bearer"),
        ({"Authorization": basic("idwise", "idw-pass")}, "basic"),
        ({"x-idwise-secret": "idw-header"}, "header"),
        ({"Authorization": "Bearer wrong", "X-IDWise-Secret": "idw-header"}, "header"),
    ],
)
def test_idwise_accepts_any_configured_method(headers: dict[str, str], method: str) -> None:
    assert auth("idwise", headers, IDWISE) == method


@pytest.mark.parametrize(
    "headers,reason",
    [
        ({}, "missing credentials"),
        ({"Authorization": "Bearer wrong"}, "bad credentials"),
        ({"Authorization": basic("idwise", "wrong")}, "bad credentials"),
        ({"Authorization": "Basic %%%"}, "malformed Basic credentials"),
        ({"Authorization": "Token idw-token"}, "unsupported authorization scheme"),
        ({"X-IDWise-Secret": "wrong"}, "bad credentials"),
        ({"X-Other-Secret": "idw-header"}, "missing credentials"),
    ],
)
def test_idwise_rejects_wrong_missing_or_malformed_credentials(
    headers: dict[str, str], reason: str
) -> None:
    rejection = rejected("idwise", headers, IDWISE)
    assert (rejection.status, rejection.reason) == (401, reason)


def test_idwise_accepts_only_the_methods_that_are_configured() -> None:
    token_only = IngestSettings(idwise_token="idw-token")
    assert auth("idwise", {"Authorization": "Bearer idw-token"}, token_only) == "bearer"
    for headers in ({"Authorization": basic("idwise", "idw-pass")}, {"X-IDWise-Secret": "x"}):
        assert rejected("idwise", headers, token_only).status == 401


def test_idwise_custom_header_may_be_the_authorization_header_itself() -> None:
    settings = IngestSettings(idwise_header=("Authorization", "Token idw-header"))
    assert auth("idwise", {"Authorization": "Token idw-header"}, settings) == "header"


def test_idwise_without_credentials_rejects_everything_even_an_empty_bearer() -> None:
    empty = IngestSettings(idwise_token="", idwise_header=("X-IDWise-Secret", ""))
    for settings in (IngestSettings(), empty):
        for headers in ({}, {"Authorization": "Bearer "}, {"X-IDWise-Secret": ""}):
            reason = rejected("idwise", headers, settings)
            assert (reason.status, reason.reason) == (401, "no credentials configured for idwise")


def test_an_unknown_provider_is_rejected_as_not_found() -> None:
    reason = rejected("sumsub", {"Authorization": "Bearer idw-token"}, IDWISE)
    assert (reason.status, reason.reason) == (404, "unknown provider")


def test_no_rejection_reason_repeats_a_credential_it_was_sent() -> None:
    offered = "s3cr3t-offered"
    cases = [
        ("idenfy", {"Idenfy-Signature": offered}, IDENFY),
        ("ondato", {"Authorization": basic(offered, offered)}, ONDATO_BASIC),
        ("ondato", {"Authorization": f"Bearer {offered}"}, ONDATO_OAUTH),
        ("ondato", {"Authorization": f"{offered} {offered}"}, ONDATO_BOTH),
        ("idwise", {"Authorization": f"Bearer {offered}", "X-IDWise-Secret": offered}, IDWISE),
    ]
    for provider, headers, settings in cases:
        rejection = rejected(provider, headers, settings)
        assert offered not in rejection.reason
        assert offered not in str(rejection)


# client_address: X-Forwarded-For only from trusted proxies


@pytest.mark.parametrize(
    "peer,forwarded,expected",
    [
        ("198.51.100.7", "20.31.10.47", "198.51.100.7"),  # untrusted peer: XFF is ignored
        ("10.0.0.2", None, "10.0.0.2"),
        ("10.0.0.2", "20.31.10.47", "20.31.10.47"),
        ("10.0.0.2", "6.6.6.6, 20.31.10.47, 10.1.1.1", "20.31.10.47"),  # forged left part
        ("10.0.0.2", "10.9.9.9, 10.1.1.1", "10.9.9.9"),  # all trusted: the origin
        ("10.0.0.2", "6.6.6.6, not-an-ip, 10.1.1.1", "10.1.1.1"),  # stop at garbage
        ("10.0.0.2", "not-an-ip", "10.0.0.2"),
        ("10.0.0.2", "20.31.10.47, ", "10.0.0.2"),
        ("10.0.0.2", "20.31.10.47:51234", "20.31.10.47"),
        ("10.0.0.2", "[2001:db8::1]:443", "2001:db8::1"),
        ("10.0.0.2", "2001:db8::1", "2001:db8::1"),
        ("10.0.0.2", "20.31.10.47:port", "10.0.0.2"),
        ("::ffff:10.0.0.2", "20.31.10.47", "20.31.10.47"),
        ("fd00::5", "20.31.10.47", "20.31.10.47"),
        ("::ffff:198.51.100.7", None, "198.51.100.7"),
    ],
)
def test_client_address_trusts_forwarded_for_only_from_trusted_proxies(
    peer: str, forwarded: str | None, expected: str
) -> None:
    headers = {} if forwarded is None else {"x-forwarded-for": forwarded}
    assert client_address(peer, headers, PROXIES) == expected


def test_client_address_reads_repeated_forwarded_for_headers_in_order() -> None:
    headers = CIMultiDict([("X-Forwarded-For", "6.6.6.6"), ("x-forwarded-for", "20.31.10.47")])
    assert client_address("10.0.0.2", headers, PROXIES) == "20.31.10.47"


def test_client_address_without_trusted_proxies_is_always_the_peer() -> None:
    assert client_address("10.0.0.2", {"X-Forwarded-For": "20.31.10.47"}, ()) == "10.0.0.2"


def test_client_address_returns_an_unparseable_peer_unchanged() -> None:
    assert client_address("", {"X-Forwarded-For": "20.31.10.47"}, PROXIES) == ""


# settings


FULL_CONFIG = {
    "KYCFLOW_IDENFY_SIGNING_KEY": " new-key , old-key,, ",
    "KYCFLOW_ONDATO_USERNAME": "ondato",
    "KYCFLOW_ONDATO_PASSWORD": "pa:ss-w0rd",
    "KYCFLOW_ONDATO_CLIENT_ID": "ondato-client",
    "KYCFLOW_ONDATO_CLIENT_SECRET": "cs-123",
    "KYCFLOW_ONDATO_ALLOWED_IPS": "20.31.10.47, 213.226.187.0/24",
    "KYCFLOW_TRUSTED_PROXIES": "10.0.0.7/8,fd00::/8",
    "KYCFLOW_IDWISE_TOKEN": "idw-token",
    "KYCFLOW_IDWISE_USERNAME": "idwise",
    "KYCFLOW_IDWISE_PASSWORD": "idw-pass",
    "KYCFLOW_IDWISE_HEADER": "X-IDWise-Secret: idw-header",
    "KYCFLOW_MAX_BODY": "65536",
    "KYCFLOW_READ_TIMEOUT": "2.5",
    "KYCFLOW_ONDATO_TOKEN_TTL": "600",
    "KYCFLOW_HEADER_TIMEOUT": "3",
    "KYCFLOW_KEEPALIVE_TIMEOUT": "120.5",
    "KYCFLOW_MAX_HEADER_SIZE": "16384",
    "KYCFLOW_ACCESS_LOG": " Off ",
}


def test_settings_read_every_documented_key() -> None:
    settings = IngestSettings.from_config(FULL_CONFIG)
    assert settings.idenfy_signing_keys == ("new-key", "old-key")
    assert settings.ondato_allowed_networks == ONDATO_IPS
    assert settings.trusted_proxies == PROXIES
    assert settings.idwise_header == ("X-IDWise-Secret", "idw-header")
    assert (settings.max_body, settings.read_timeout, settings.token_ttl) == (65536, 2.5, 600)
    assert settings == dataclasses.replace(
        ONDATO_BOTH,
        idenfy_signing_keys=("new-key", "old-key"),
        trusted_proxies=PROXIES,
        idwise_token="idw-token",
        idwise_username="idwise",
        idwise_password="idw-pass",
        idwise_header=("X-IDWise-Secret", "idw-header"),
        max_body=65536,
        read_timeout=2.5,
        token_ttl=600,
        header_timeout=3.0,
        keepalive_timeout=120.5,
        max_header_size=16384,
        access_log=False,
    )


def test_settings_treat_empty_values_as_unset_and_default_to_fail_closed() -> None:
    settings = IngestSettings.from_config(dict.fromkeys(FULL_CONFIG, "  "))
    assert settings == IngestSettings.from_config({}) == IngestSettings()
    assert (settings.max_body, settings.read_timeout, settings.token_ttl) == (1048576, 10.0, 3600)
    assert (settings.header_timeout, settings.keepalive_timeout) == (10.0, 75.0)
    assert (settings.max_header_size, settings.access_log) == (8192, True)
    for provider in ("idenfy", "ondato", "idwise"):
        assert rejected(provider, {"Authorization": "Bearer "}, settings).status == 401


@pytest.mark.parametrize(
    "key,value",
    [
        ("KYCFLOW_ONDATO_ALLOWED_IPS", "20.31.10.47, 20.31.10.300"),
        ("KYCFLOW_TRUSTED_PROXIES", "10.0.0.0/33"),
        ("KYCFLOW_MAX_BODY", "1MiB"),
        ("KYCFLOW_MAX_BODY", "0"),
        ("KYCFLOW_MAX_BODY", "1.5"),
        ("KYCFLOW_READ_TIMEOUT", "nan"),
        ("KYCFLOW_READ_TIMEOUT", "-1"),
        ("KYCFLOW_ONDATO_TOKEN_TTL", "inf"),
        ("KYCFLOW_MAX_BODY", str(256 * 1024 * 1024 + 1)),  # SQLite refuses values over 1e9
        ("KYCFLOW_HEADER_TIMEOUT", "0"),
        ("KYCFLOW_KEEPALIVE_TIMEOUT", "soon"),
        ("KYCFLOW_MAX_HEADER_SIZE", "65537"),
        ("KYCFLOW_ACCESS_LOG", "maybe"),
        ("KYCFLOW_IDWISE_HEADER", "X-IDWise-Secret idw-header"),
        ("KYCFLOW_IDWISE_HEADER", "Bad Name: idw-header"),
        ("KYCFLOW_IDWISE_HEADER", "X-IDWise-Secret:"),
    ],
)
def test_settings_reject_a_malformed_value_naming_its_key(key: str, value: str) -> None:
    with pytest.raises(ValueError, match=key) as caught:
        IngestSettings.from_config({key: value})
    if key == "KYCFLOW_IDWISE_HEADER":
        assert "idw-header" not in str(caught.value)


@pytest.mark.parametrize(
    "key",
    ["KYCFLOW_ONDATO_USERNAME", "KYCFLOW_ONDATO_CLIENT_SECRET", "KYCFLOW_IDWISE_PASSWORD"],
)
def test_settings_refuse_half_of_a_credential_pair(key: str) -> None:
    with pytest.raises(ValueError, match=key):
        IngestSettings.from_config({key: "half"})


def test_settings_repr_shows_no_secret() -> None:
    settings = IngestSettings.from_config(FULL_CONFIG)
    text = repr(settings) + str(settings)
    for secret in ("new-key", "old-key", "pa:ss-w0rd", "cs-123", "idw-token", "idw-header"):
        assert secret not in text
    assert "max_body=65536" in text


@pytest.mark.parametrize(
    "value,expected", [("true", True), ("1", True), ("NO", False), ("0", False)]
)
def test_the_access_log_setting_reads_common_spellings(value: str, expected: bool) -> None:
    assert IngestSettings.from_config({"KYCFLOW_ACCESS_LOG": value}).access_log is expected


def test_the_custom_idwise_header_is_a_secret_header_by_its_lower_case_name() -> None:
    assert IngestSettings.from_config(FULL_CONFIG).secret_headers == {"x-idwise-secret"}
    assert IngestSettings().secret_headers == frozenset()


def test_credential_keys_name_every_secret_and_nothing_else() -> None:
    secrets = {k for k in FULL_CONFIG if any(w in k for w in ("KEY", "PASSWORD", "SECRET"))}
    assert secrets | {"KYCFLOW_IDWISE_TOKEN", "KYCFLOW_IDWISE_HEADER"} <= set(CREDENTIAL_KEYS)
    assert set(CREDENTIAL_KEYS) <= set(FULL_CONFIG)
    assert not {"KYCFLOW_MAX_BODY", "KYCFLOW_TRUSTED_PROXIES"} & set(CREDENTIAL_KEYS)
