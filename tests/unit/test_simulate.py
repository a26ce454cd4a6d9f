"""`kycflow simulate` against a real HTTP server on 127.0.0.1 that checks the contracts.

The server below authenticates exactly as the ingest contract says (HMAC over the raw
bytes with the first iDenfy key, Ondato Basic or an OAuth2 bearer from its own
`/oauth/token`, IDWise bearer) and records what it accepts, so these tests pin the
simulator to the wire contract rather than to its own code.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import random
import socket
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from statemachines import CanonicalEvent, normalise, replay
from streams.config import ConfigError, credentials_path, load_config
from streams.simulator.samples import Webhook, deliver
from streams.simulator.simulate import (
    Summary,
    add_parser,
    base_url,
    lifecycles,
    plan,
    simulate,
)

BASIC = {"KYCFLOW_ONDATO_USERNAME": "ondato", "KYCFLOW_ONDATO_PASSWORD": "pässword"}
OAUTH = {"KYCFLOW_ONDATO_CLIENT_ID": "client-7", "KYCFLOW_ONDATO_CLIENT_SECRET": "s3cret"}
OTHERS = {"KYCFLOW_IDENFY_SIGNING_KEY": " first-key , second-key", "KYCFLOW_IDWISE_TOKEN": "tk"}


class Received(NamedTuple):
    provider: str
    headers: Mapping[str, str]
    body: bytes
    method: str


class FakeKycflow:
    """Authenticates per the contract, records accepted deliveries, flags repeats."""

    def __init__(
        self, config: Mapping[str, str], *, ttl: int = 3600, uses: int = 0, jitter: float = 0
    ) -> None:
        self.config, self.ttl, self.uses = config, ttl, uses  # uses: token budget, 0 = any
        self.jitter, self.delays = jitter, random.Random(0)  # jitter: reorders overlapping sends
        self.received: list[Received] = []
        self.tokens: dict[str, int] = {}  # token -> uses left
        self.token_requests, self.rejected = 0, Counter[int]()
        ondato = {k.removeprefix("KYCFLOW_ONDATO_"): v for k, v in config.items()}
        self.client = ondato.get("CLIENT_ID"), ondato.get("CLIENT_SECRET")
        self.basic = ondato.get("USERNAME"), ondato.get("PASSWORD")
        self.app = web.Application()
        self.app.router.add_post("/oauth/token", self.token)
        self.app.router.add_post("/webhooks/{p}", self.webhook)

    async def token(self, request: web.Request) -> web.Response:
        self.token_requests += 1
        form = await request.post()
        if form.get("grant_type") != "client_credentials" or _basic(request) != self.client:
            return web.json_response({"error": "invalid_client"}, status=401)
        token = f"token-{self.token_requests}"
        self.tokens[token] = self.uses
        grant = {"access_token": token, "token_type": "Bearer", "expires_in": self.ttl}
        return web.json_response(grant)

    async def webhook(self, request: web.Request) -> web.Response:
        provider, body = request.match_info["p"], await request.read()
        await asyncio.sleep(self.jitter * self.delays.random())
        method = self.authenticate(provider, request, body)
        if method is None or request.content_type != "application/json":
            self.rejected[415 if method else 401] += 1
            return web.json_response({}, status=415 if method else 401)
        duplicate = any(r.provider == provider and r.body == body for r in self.received)
        self.received.append(Received(provider, dict(request.headers), body, method))
        return web.json_response({"offset": len(self.received), "duplicate": duplicate}, status=202)

    def authenticate(self, provider: str, request: web.Request, body: bytes) -> str | None:
        headers, auth = request.headers, request.headers.get("Authorization", "")
        if provider == "idenfy":
            key = self.config["KYCFLOW_IDENFY_SIGNING_KEY"].split(",")[0].strip().encode()
            expected = hmac.new(key, body, hashlib.sha256).hexdigest()
            signed = hmac.compare_digest(headers.get("Idenfy-Signature", ""), expected)
            return "hmac" if signed and headers.get("Idenfy-Event-Type") else None
        if provider == "idwise":
            return "bearer" if auth == f"Bearer {self.config['KYCFLOW_IDWISE_TOKEN']}" else None
        if auth.startswith("Bearer ") and auth[7:] in self.tokens:
            left = self.tokens[auth[7:]]
            if self.uses and left == 0:
                return None  # used up: the client must fetch another token
            self.tokens[auth[7:]] = left - 1
            return "oauth2"
        return "basic" if all(self.basic) and _basic(request) == self.basic else None


def _basic(request: web.Request) -> tuple[str, str] | None:
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme != "Basic":
        return None
    user, _, password = base64.b64decode(encoded).decode("utf-8").partition(":")
    return user, password


def run(
    config: Mapping[str, str], server: FakeKycflow | None = None, **options: Any
) -> tuple[Summary, FakeKycflow]:
    server = server or FakeKycflow(config)

    async def main() -> Summary:
        async with TestServer(server.app, host="127.0.0.1") as http:
            return await simulate(config, str(http.make_url("")), progress=False, **options)

    return asyncio.run(main()), server


def by_lifecycle(histories: list[list[Webhook]], received: list[Received]) -> list[list[bytes]]:
    """Each verification's bodies in arrival order."""
    owner = {body: n for n, events in enumerate(histories) for _, _, body in events}
    arrived: list[list[bytes]] = [[] for _ in histories]
    for delivery in received:
        arrived[owner[delivery.body]].append(delivery.body)
    return arrived


def test_every_lifecycle_event_arrives_authenticated_and_in_provider_order() -> None:
    config = {**OTHERS, **BASIC}
    server = FakeKycflow(config, jitter=0.005)
    summary, _ = run(config, server, verifications=21, seed=7, concurrency=8)
    histories = lifecycles(random.Random(7), 21)
    expected = [body for events in histories for _, _, body in events]
    assert len(set(expected)) == len(expected)  # every event is distinct bytes
    assert Counter(r.body for r in server.received) == Counter(expected)
    assert by_lifecycle(histories, server.received) == [[b for _, _, b in e] for e in histories]
    assert {r.method for r in server.received} == {"hmac", "basic", "bearer"}
    total = summary.total()
    assert total.sent == total.accepted == len(expected) and total.duplicates == total.failed == 0
    assert set(summary.tallies) == {"idenfy", "ondato", "idwise"}
    assert summary.skipped == () and summary.seed == 7 and summary.elapsed > 0


def test_ondato_uses_oauth2_when_a_client_is_configured_and_basic_otherwise() -> None:
    _, oauth = run({**OTHERS, **BASIC, **OAUTH}, verifications=10, seed=1)
    ondato = [r for r in oauth.received if r.provider == "ondato"]
    assert ondato and {r.method for r in ondato} == {"oauth2"}
    assert oauth.token_requests == 1  # one token, shared by every delivery while valid
    _, basic = run({**OTHERS, **BASIC}, verifications=10, seed=1)
    assert {r.method for r in basic.received if r.provider == "ondato"} == {"basic"}
    assert basic.token_requests == 0


def test_ondato_token_is_refreshed_when_expired_and_after_a_401() -> None:
    config = {**OTHERS, **OAUTH}
    summary, expiring = run(config, FakeKycflow(config, ttl=0), verifications=6, seed=2)
    ondato = summary.tallies["ondato"]
    assert ondato.accepted == ondato.sent and expiring.token_requests == ondato.sent
    summary, revoking = run(
        config, FakeKycflow(config, uses=3), verifications=6, seed=2, concurrency=1
    )
    ondato = summary.tallies["ondato"]
    assert ondato.failed == 0 and ondato.accepted == ondato.sent > 3
    assert revoking.token_requests == -(-ondato.sent // 3)


def test_duplicates_resend_the_same_bytes_later_and_the_server_count_is_reported() -> None:
    summary, server = run({**OTHERS, **BASIC}, verifications=60, seed=5, duplicates=True)
    bodies = Counter(r.body for r in server.received)
    repeated = [body for body, n in bodies.items() if n > 1]
    assert 0.1 * len(bodies) < len(server.received) - len(bodies) < 0.3 * len(bodies)
    for body in repeated:  # same headers, same signature: a byte-identical resend
        copies = [r.headers for r in server.received if r.body == body]
        assert all(headers == copies[0] for headers in copies)
    assert summary.total().duplicates == len(server.received) - len(bodies)
    assert summary.total().accepted == len(server.received)


def test_reorder_changes_each_verifications_order_but_not_the_set() -> None:
    histories = lifecycles(random.Random(9), 30)
    _, ordered = run({**OTHERS, **BASIC}, verifications=30, seed=9)
    _, shuffled = run({**OTHERS, **BASIC}, verifications=30, seed=9, reorder=True)
    assert Counter(r.body for r in shuffled.received) == Counter(r.body for r in ordered.received)
    assert by_lifecycle(histories, shuffled.received) != by_lifecycle(histories, ordered.received)


def test_a_seed_reproduces_the_same_deliveries() -> None:
    config = {**OTHERS, **BASIC}
    first = run(config, verifications=15, seed=11, reorder=True, duplicates=True)[1].received
    again = run(config, verifications=15, seed=11, reorder=True, duplicates=True)[1].received
    other = run(config, verifications=15, seed=12, reorder=True, duplicates=True)[1].received
    histories = lifecycles(random.Random(11), 15)
    assert by_lifecycle(histories, first) == by_lifecycle(histories, again)
    assert not {r.body for r in first} & {r.body for r in other}
    deliveries = plan(random.Random(3), histories, reorder=True, duplicates=True)
    assert deliveries == plan(random.Random(3), histories, reorder=True, duplicates=True)


def test_every_generated_webhook_normalises_and_the_kinds_are_covered() -> None:
    kinds, types = set(), set()
    for seed in range(3):
        for events in lifecycles(random.Random(seed), 350):
            for webhook in events:
                event = normalise(deliver(webhook))
                assert isinstance(event, CanonicalEvent), event
                kinds.add((event.subject.provider, event.subject.kind))
                types.add(event.event_type)
    assert {provider: sorted(k for p, k in kinds if p == provider) for provider, _ in kinds} == {
        "idenfy": ["aml_monitoring", "kyb", "kyc"],
        "ondato": ["kyb", "kyb_document", "kyc"],
        "idwise": ["aml_monitoring", "kyc"],
    }
    rare = (
        "IDENTIFICATION_RESUBMITTED|IDENTIFICATION_EXPIRED|IDENTIFICATION_CANCELLED|"
        "COMPANY_INFO_REQUEST|COMPANY_AML_REVIEW|COMPANY_DELETE|KycIdentification.Updated|"
        "KybIdentification.Document.Deleted|Verification Update Required|Manually Reviewed"
    )
    assert set(rare.split("|")) <= types


def test_lifecycles_carry_their_own_order_so_any_arrival_order_converges() -> None:
    """IDWise attempts are the exception the design names: arrival order tells them apart."""
    for events in lifecycles(random.Random(4), 200):
        if any(b"Verification Update Required" in body for _, _, body in events):
            continue
        forward = replay([deliver(w, n) for n, w in enumerate(events)])
        backward = replay([deliver(w, n) for n, w in enumerate(reversed(events))])
        assert {k: (s.status, s.decided_by, s.attempt) for k, s in forward.items()} == {
            k: (s.status, s.decided_by, s.attempt) for k, s in backward.items()
        }


def test_providers_without_credentials_are_skipped_and_rejections_counted_by_status() -> None:
    server = FakeKycflow({"KYCFLOW_IDWISE_TOKEN": "the server expects another"})
    summary, _ = run({"KYCFLOW_IDWISE_TOKEN": "tk"}, server, verifications=8, seed=3)
    assert list(summary.tallies) == ["idwise"] and summary.skipped == ("idenfy", "ondato")
    idwise = summary.tallies["idwise"]
    assert idwise.sent > 8 and idwise.rejected == Counter({401: idwise.sent}) == server.rejected
    with pytest.raises(ConfigError):
        asyncio.run(simulate({}, "http://127.0.0.1:9", progress=False))


def cli(argv: list[str], monkeypatch: pytest.MonkeyPatch, **env: str) -> int:
    """`kycflow simulate ARGV` with exactly `env` as the KYCFLOW_* environment."""
    for key in [key for key in os.environ if key.startswith("KYCFLOW_")]:
        monkeypatch.delenv(key)
    for key, value in {**env, "COLUMNS": "200"}.items():  # wide enough for the whole table
        monkeypatch.setenv(key, value)
    root = argparse.ArgumentParser(prog="kycflow")
    add_parser(root.add_subparsers(dest="command"))
    args = root.parse_args(["simulate", *argv])
    return int(args.handler(args))


def test_cli_explains_missing_credentials_counts_network_errors_and_prints_no_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli([], monkeypatch, KYCFLOW_DB=str(tmp_path / "k.db")) == 2
    err = capsys.readouterr().err
    assert "kycflow serve" in err and str(tmp_path / "k.credentials.json") in err
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    stored = {"KYCFLOW_IDWISE_TOKEN": "tk-secret", "KYCFLOW_ONDATO_USERNAME": "half"}
    (tmp_path / "k.credentials.json").write_text(json.dumps(stored))
    env = {"KYCFLOW_DB": str(tmp_path / "k.db"), "KYCFLOW_IDENFY_SIGNING_KEY": "first-key"}
    argv = ["--url", f"http://127.0.0.1:{port}", "--verifications", "4", "--seed", "1"]
    assert cli(argv, monkeypatch, **env) == 1
    out, err = capsys.readouterr()
    assert "cannot connect" in out and "seed 1" in out and "kycflow serve" in err
    assert "warning: skipping ondato" in err  # a user name without a password is no credential
    assert not any(secret in out + err for secret in ("first-key", "tk-secret"))


def test_config_environment_wins_over_the_credentials_file(tmp_path: Path) -> None:
    assert credentials_path("./kycflow.db") == Path("kycflow.credentials.json")
    db = tmp_path / "data" / "kyc.sqlite"
    db.parent.mkdir()
    assert load_config({"KYCFLOW_DB": str(db)}) == {"KYCFLOW_DB": str(db)}  # no file: fine
    stored = {"KYCFLOW_IDWISE_TOKEN": "file", "KYCFLOW_ONDATO_USERNAME": "user", "OTHER": "x"}
    credentials_path(db).write_text(json.dumps(stored))
    env = {"KYCFLOW_DB": str(db), "KYCFLOW_IDWISE_TOKEN": "env", "KYCFLOW_ONDATO_USERNAME": " "}
    assert load_config({**env, "PATH": "/bin"}) == {
        "KYCFLOW_DB": str(db),
        "KYCFLOW_IDWISE_TOKEN": "env",  # a non-empty environment value wins
        "KYCFLOW_ONDATO_USERNAME": "user",  # an empty one does not
    }
    assert load_config({}, str(db))["KYCFLOW_IDWISE_TOKEN"] == "file"
    credentials_path(db).write_text('{"KYCFLOW_IDWISE_TOKEN": "secret-value",')
    with pytest.raises(ConfigError, match="not valid JSON") as raised:
        load_config({"KYCFLOW_DB": str(db)})
    assert "secret-value" not in str(raised.value)


@pytest.mark.parametrize(
    "given, url",
    [
        ("127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("localhost:8080/", "http://localhost:8080"),
        ("https://kyc.example.com/base/", "https://kyc.example.com/base"),
        (" http://[::1]:9000 ", "http://[::1]:9000"),
    ],
)
def test_a_url_without_a_scheme_means_http(given: str, url: str) -> None:
    assert base_url(given) == url


@pytest.mark.parametrize("given", ["ftp://x", "127.0.0.1:port", "http://", ":8080", "h:1?x=1"])
def test_a_url_that_is_no_server_address_is_an_argument_error(given: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="expected"):
        base_url(given)
