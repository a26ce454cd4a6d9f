"""The read API, fuzzed against its own /openapi.json over real HTTP (schemathesis).

A real `kycflow serve` (with an API token, as the document's security says) holding a few
verifications. schemathesis generates requests from the served document, valid and
invalid, and checks every answer: no 5xx, a status the document lists for the route, the
documented content type and body schema, the token enforced, invalid input refused with a
4xx. Generated filters rarely meet real rows, so a few known requests check the
documented schemas on real answers too. Bounded (a fixed number of derandomized examples
per route): about ten seconds, the same every run. /feed is left out: an endless stream.
The specific refusals (provider=null, limit=0 …) are pinned in tests/unit/test_read_api.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests import payloads as p
from tests.e2e.service import CREDENTIALS, Service

EXAMPLES = 40  # per route and generation mode
TOKEN = "fuzz-token"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    env = {**CREDENTIALS, "KYCFLOW_API_TOKEN": TOKEN}  # as the document's security says
    service = Service(tmp_path_factory.mktemp("fuzz") / "kycflow.db", env)
    service.start()
    try:
        auto = "IDENTIFICATION_AUTO_FINISHED"
        for n in range(3):
            service.send(p.idenfy_identification(auto, f"scan-{n}", final=False))
        service.send(p.ondato_kyb("Created", "kyb-1", webhook_id="w-1"))
        deadline = time.monotonic() + 10
        while len(service.get("/verifications", TOKEN)[1]["items"]) < 4:
            assert time.monotonic() < deadline, "the processor did not catch up"
            time.sleep(0.05)
        yield service
    finally:
        service.stop()


class ApiToken:
    """The configured token on every generated request; schemathesis also sends requests
    without it, or with a wrong one, and expects the 401 the document promises."""

    def get(self, case: schemathesis.Case, context: schemathesis.AuthContext) -> str:
        return TOKEN

    def set(self, case: schemathesis.Case, data: str, context: schemathesis.AuthContext) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@pytest.fixture(scope="module")
def read_api(live: Service) -> schemathesis.BaseSchema:
    schema = schemathesis.openapi.from_url(f"{live.url}/openapi.json")
    schema.auth(ApiToken)
    return schema


# Every GET route but /feed. Through the Python API (as_strategy), not schemathesis's
# pytest plugin, whose parametrize does not run under pytest 9.
ROUTES = [
    "/verifications",
    "/verifications/{provider}/{kind}/{id}",
    "/verifications/{provider}/{kind}/{id}/history",
    "/healthz",
    "/metrics",
    "/openapi.json",
]
MODES = [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]
# Negative data needs something to negate: the routes without parameters get none.
CASES = [
    (route, mode)
    for route in ROUTES
    for mode in MODES
    if route.startswith("/verifications") or mode == schemathesis.GenerationMode.POSITIVE
]


@pytest.mark.parametrize("route, mode", CASES, ids=[f"{r}-{m.value}" for r, m in CASES])
def test_the_read_api_answers_as_its_openapi_document_says(
    read_api: schemathesis.BaseSchema, route: str, mode: schemathesis.GenerationMode
) -> None:
    operation = read_api[route]["GET"]

    @given(case=operation.as_strategy(mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def answers_as_documented(case: schemathesis.Case) -> None:
        case.call_and_validate(timeout=10)

    answers_as_documented()


KNOWN = [  # real data: generated filters and cursors mostly find empty pages or 400s
    ("/verifications", {}, {}),
    ("/verifications", {}, {"order": "newest", "limit": 2}),
    (
        "/verifications/{provider}/{kind}/{id}",
        {"provider": "idenfy", "kind": "kyc", "id": "scan-1"},
        {},
    ),
    (
        "/verifications/{provider}/{kind}/{id}/history",
        {"provider": "ondato", "kind": "kyb", "id": "kyb-1"},
        {},
    ),
]


@pytest.mark.parametrize("route, path, query", KNOWN)
def test_real_answers_match_the_documented_schemas(
    read_api: schemathesis.BaseSchema, route: str, path: dict[str, str], query: dict[str, Any]
) -> None:
    case = read_api[route]["GET"].Case(path_parameters=path, query=query)
    response = case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert response.status_code == 200


def test_every_read_route_but_the_feed_is_fuzzed(live: Service) -> None:
    _, document = live.get("/openapi.json")  # open: it describes routes, not data
    reads = {path for path, item in document["paths"].items() if "get" in item}
    assert reads - {"/feed"} == set(ROUTES)
