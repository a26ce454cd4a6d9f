"""The OpenAPI document says what the ingest routes really answer.

The read API is fuzzed against the document over HTTP (tests/e2e/test_openapi_fuzz.py);
the ingest routes need provider credentials and signatures a fuzzer cannot make, so here
every status their code can raise must be documented for its route, and the webhook body
schema must admit what ingest stores (any authenticated bytes, a JSON array included).
"""

from __future__ import annotations

import re
from pathlib import Path

from streams.service.openapi import OPENAPI

ROOT = Path(__file__).resolve().parents[2]


def raised(pattern: str, *files: str) -> set[str]:
    return {m for f in files for m in re.findall(pattern, (ROOT / f).read_text(encoding="utf-8"))}


def documented(path: str) -> set[str]:
    return set(OPENAPI["paths"][path]["post"]["responses"])


def test_every_status_the_webhook_route_raises_is_documented() -> None:
    statuses = raised(r"\berror\((\d{3})", "ingest/app.py")
    statuses |= raised(r"Rejection\((\d{3})", "ingest/auth.py")
    assert {"401", "413", "415", "431"} <= statuses  # the scan finds them
    assert statuses | {"202", "503"} <= documented("/webhooks/{provider}")


def test_every_status_the_token_route_raises_is_documented() -> None:
    statuses = raised(r"OAuthError\(\s*(\d{3})", "ingest/app.py", "ingest/oauth.py")
    assert {"400", "401", "415"} <= statuses
    assert statuses | {"200"} <= documented("/oauth/token")


def test_the_webhook_body_schema_admits_any_json_as_ingest_does() -> None:
    body = OPENAPI["paths"]["/webhooks/{provider}"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"] == {}  # object, array, anything


def test_every_operation_lists_what_the_server_refuses_before_routing() -> None:
    for item in OPENAPI["paths"].values():
        for operation in item.values():
            assert {"400", "408", "414", "431"} <= set(operation["responses"])
