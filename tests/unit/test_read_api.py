"""The HTTP read API over a real projections file, served on a real loopback socket."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer

from projections import listing, queries
from projections.api import read_routes
from projections.schema import open_projections
from projections.store import ProjectionStore, States
from streams.erasure.api import erase_routes
from streams.service.openapi import OPENAPI, openapi_route
from tests import payloads as p

METRICS = "# TYPE kycflow_up gauge\nkycflow_up 1\n"
TOKEN = "s3cret-token"
SCAN = "scan-1"


def at(second: int) -> str:
    return f"2026-11-22T10:00:{second:02d}.000000Z"


WEBHOOKS: list[p.Webhook] = [
    p.idenfy_identification("IDENTIFICATION_AUTO_FINISHED", SCAN, final=False, overall="REVIEWING"),
    p.idenfy_identification(
        "IDENTIFICATION_MANUAL_FINISHED", SCAN, manual=True, external_ref="order-19"
    ),
    p.idenfy_identification(  # duplicate
        "IDENTIFICATION_MANUAL_FINISHED", SCAN, manual=True, external_ref="order-19"
    ),
    p.ondato_kyc("Created", "idv-7", webhook_id="w-1"),
    p.ondato_kyb("Created", "kyb-1", webhook_id="w-2"),
    p.ondato_document("Created", "doc-1", "kyb-1", webhook_id="w-3"),
    ("ondato", {"Content-Type": "application/json"}, b"not json"),  # quarantined
    *(p.idwise("Finished User Steps", event_id=f"e-{n}", journey=f"j-{n}") for n in range(5)),
]
SUBJECTS = 9  # scan-1, idv-7, kyb-1, doc-1, j-0 … j-4


def append(path: Path, webhooks: list[p.Webhook], first: int) -> None:
    db = open_projections(str(path))
    envelopes = [p.deliver(hook, first + n, at(first + n)) for n, hook in enumerate(webhooks)]
    ProjectionStore(db).process(envelopes)
    db.close()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    path = tmp_path / "projections.db"
    append(path, WEBHOOKS, 1)
    return path


Client = TestClient[Any, Any]
Scenario = Callable[[Client], Coroutine[Any, Any, None]]


async def serving(scenario: Scenario, path: Path, **options: Any) -> None:
    """Run `scenario` against the read API and the OpenAPI route on a loopback port."""
    app = web.Application(middlewares=options.pop("middlewares", ()))
    options.setdefault("api_token", None)
    app.add_routes(
        read_routes(str(path), render_metrics=lambda: METRICS, feed_poll=0.02, **options)
    )
    app.add_routes([openapi_route()])
    app.add_routes(erase_routes(str(path), api_token=options["api_token"], master=None))
    client: Client = TestClient(TestServer(app, host="127.0.0.1", port=0))
    async with client:  # starts the server on a free port, closes both on exit
        await scenario(client)


@pytest.fixture
def serve(db_path: Path) -> Callable[..., None]:
    """`serve(scenario, path=db_path, **read_routes options)`, driven by `asyncio.run`."""

    def go(scenario: Scenario, path: Path = db_path, **options: Any) -> None:
        asyncio.run(asyncio.wait_for(serving(scenario, path, **options), 30))

    return go


async def get_json(client: Client, url: str, status: int = 200, **kw: Any) -> Any:
    async with client.get(url, **kw) as response:
        assert response.status == status, await response.text()
        assert response.content_type == "application/json"
        return await response.json()


def test_a_verification_is_the_folded_state_made_public(db_path: Path, serve: Any) -> None:
    db = open_projections(str(db_path))
    expected = States(db)[f"idenfy/kyc/{SCAN}"].public()
    db.close()

    async def scenario(client: Client) -> None:
        found = await get_json(client, f"/verifications/idenfy/kyc/{SCAN}")
        assert found == expected
        assert found["status"] == "approved" and found["decided_by"] == "manual"
        assert (found["cause_offset"], found["updated_at"]) == (2, at(2))
        document = await get_json(client, "/verifications/ondato/kyb_document/doc-1")
        assert (document["parent_kind"], document["parent_id"]) == ("kyb", "kyb-1")
        assert "error" in await get_json(client, "/verifications/idenfy/kyc/nope", 404)
        assert "error" in await get_json(client, "/verifications/x/y/%C3%A9/history", 404)

    serve(scenario)


def test_history_explains_every_delivery_including_the_duplicate(serve: Any) -> None:
    async def scenario(client: Client) -> None:
        found = await get_json(client, f"/verifications/idenfy/kyc/{SCAN}/history")
        assert found["verification"]["status"] == "approved"
        steps = [(t["from_status"], t["to_status"], t["offset"]) for t in found["transitions"]]
        assert steps == [(None, "in_review", 1), ("in_review", "approved", 2)]
        assert found["transitions"][1]["final"] is True
        effects = [(e["offset"], e["effect"]) for e in found["events"]]
        assert effects == [(1, "transition"), (2, "transition"), (3, "duplicate")]

    serve(scenario)


async def ids(client: Client, query: str) -> list[str]:
    return [item["id"] for item in (await get_json(client, f"/verifications?{query}"))["items"]]


def test_listing_filters_by_provider_kind_status_and_time(serve: Any) -> None:
    async def scenario(client: Client) -> None:
        assert await ids(client, "provider=idwise") == [f"j-{n}" for n in range(5)]
        assert await ids(client, "provider=ondato&kind=kyb") == ["kyb-1"]
        assert await ids(client, "status=approved") == [SCAN]
        assert len(await ids(client, f"limit={listing.MAX_LIMIT}")) == SUBJECTS
        assert len(await ids(client, "limit=1")) == 1
        assert "state" not in (await get_json(client, "/verifications"))["items"][0]
        # j-0 … j-4 were received at seconds 8 … 12; updated_since is inclusive.
        assert await ids(client, f"updated_since={at(11)}") == ["j-3", "j-4"]
        assert await ids(client, "updated_since=2026-11-22T12:00:11%2B02:00") == ["j-3", "j-4"]
        assert await ids(client, "updated_since=2026-11-22T10:00:11.000001") == ["j-4"]

    serve(scenario)


def test_listing_newest_first_walks_every_row_once_in_update_order(serve: Any) -> None:
    seen: list[tuple[str, str]] = []

    async def scenario(client: Client) -> None:
        everything = (await get_json(client, "/verifications?limit=500"))["items"]
        expected = sorted(
            ((v["updated_at"], f"{v['provider']}/{v['kind']}/{v['id']}") for v in everything),
            reverse=True,
        )
        url: str | None = "/verifications?order=newest&limit=2"
        while url is not None:
            page = await get_json(client, url)
            seen.extend(
                (i["updated_at"], f"{i['provider']}/{i['kind']}/{i['id']}") for i in page["items"]
            )
            cursor = page["next_cursor"]
            url = None if cursor is None else f"/verifications?order=newest&limit=2&cursor={cursor}"
        assert seen == expected and len(seen) == SUBJECTS
        newest = await ids(client, "order=newest&provider=idwise&updated_since=" + at(10))
        assert newest == ["j-4", "j-3", "j-2"]

    serve(scenario)


def test_a_verification_carries_the_integrators_references(serve: Any) -> None:
    async def scenario(client: Client) -> None:
        found = await get_json(client, f"/verifications/idenfy/kyc/{SCAN}")
        assert (found["reference"], found["references"]) == ("client-42", ["client-42", "order-19"])
        kyb = await get_json(client, "/verifications/ondato/kyb/kyb-1")
        assert (kyb["reference"], kyb["references"]) == (None, [])

    serve(scenario)


def test_listing_finds_verifications_by_any_reference_or_provider_id(serve: Any) -> None:
    async def scenario(client: Client) -> None:
        # clientId is the reference of the iDenfy scan and of every IDWise journey
        # (referenceNo); the externalRef only of the scan.
        journeys = [f"j-{n}" for n in range(5)]
        assert await ids(client, "reference=client-42") == [SCAN]
        assert await ids(client, "reference=order-19") == [SCAN]
        assert await ids(client, "reference=customer-42") == journeys
        assert await ids(client, "reference=customer-42&order=newest") == journeys[::-1]
        assert await ids(client, "reference=customer-42&updated_since=" + at(11)) == journeys[3:]
        assert await ids(client, "reference=order-19&provider=idwise") == []
        assert await ids(client, "reference=nobody") == []
        assert await ids(client, "reference=ORDER-19") == [], "matched exactly"
        # A provider id whatever the kind; with filters as any other listing.
        assert await ids(client, f"id={SCAN}") == [SCAN]
        assert await ids(client, "id=kyb-1") == ["kyb-1"]
        assert await ids(client, "id=kyb-1&kind=kyb_document") == []
        assert await ids(client, "id=doc-1&provider=ondato&kind=kyb_document") == ["doc-1"]
        assert await ids(client, f"id={SCAN}&reference=order-19&status=approved") == [SCAN]
        assert await ids(client, "id=j-1&reference=client-42") == []

    serve(scenario)


def test_listing_by_reference_pages_with_the_cursor(serve: Any) -> None:
    async def scenario(client: Client) -> None:
        for order in ("key", "newest"):
            seen: list[str] = []
            query = f"/verifications?reference=customer-42&order={order}&limit=2"
            url: str | None = query
            while url is not None:
                page = await get_json(client, url)
                seen += [item["id"] for item in page["items"]]
                cursor = page["next_cursor"]
                url = None if cursor is None else f"{query}&cursor={cursor}"
            assert sorted(seen) == [f"j-{n}" for n in range(5)] and len(seen) == 5, order

    serve(scenario)


class Explained:
    """A connection that records the query plan of every statement run through it."""

    def __init__(self, db: Any) -> None:
        self.db, self.plans = db, []

    def execute(self, sql: str, params: Any = ()) -> Any:
        self.plans += [row[-1] for row in self.db.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
        return self.db.execute(sql, params)


AFTER_X = {
    "key": listing.encode_cursor({"subject": "idenfy/kyc/x"}, "key"),
    "newest": listing.encode_cursor({"subject": "idenfy/kyc/x", "updated_at": at(1)}, "newest"),
}


@pytest.mark.parametrize(
    "query",
    [
        "reference=r&provider=idenfy&kind=kyc&status=approved",
        "reference=r&order=newest&updated_since=2026-01-01T00:00:00Z",
        f"reference=r&order=newest&cursor={AFTER_X['newest']}",
        f"id=x&provider=idenfy&status=approved&cursor={AFTER_X['key']}",
        "id=x&order=newest&updated_since=2026-01-01T00:00:00Z",
    ],
)
def test_a_lookup_reads_only_its_own_subjects_whatever_else_is_asked(
    db_path: Path, query: str
) -> None:
    # Without stats SQLite picked verifications_by_status for provider=, a scan of every
    # row of that provider: the listing keeps lookups on the subject key.
    wanted = listing.parse(parse_qsl(query))
    db = open_projections(str(db_path))
    explained = Explained(db)
    listing.page(explained, wanted)  # type: ignore[arg-type]
    db.close()
    assert explained.plans and all(
        step.startswith(("SEARCH", "LIST", "COMPOUND", "LEFT-MOST", "UNION", "USE TEMP"))
        and "verifications_by_status" not in step
        and "verifications_by_update" not in step
        for step in explained.plans
    ), explained.plans


def test_a_reference_first_seen_later_finds_the_subject_from_then_on(
    db_path: Path, serve: Any
) -> None:
    """The index follows the references: a later body's other id, and a smaller primary
    one that takes the place of the earlier (the smallest is kept), find the subject; the
    earlier primary reference still does, among its references."""

    async def scenario(client: Client) -> None:
        assert await ids(client, "reference=late-ref") == []
        late = p.idenfy_identification(
            "IDENTIFICATION_MANUAL_FINISHED",
            SCAN,
            manual=True,
            client_id="a-1",
            external_ref="late-ref",
        )
        append(db_path, [late], 50)
        found = await get_json(client, f"/verifications/idenfy/kyc/{SCAN}")
        assert found["reference"] == "a-1"
        assert found["references"] == ["a-1", "client-42", "late-ref", "order-19"]
        for reference in found["references"]:
            assert await ids(client, f"reference={reference}") == [SCAN], reference

    serve(scenario)


NEWEST_CURSOR = listing.encode_cursor(
    {"updated_at": at(1), "subject": f"idenfy/kyc/{SCAN}"}, "newest"
)
BAD_LISTINGS = [
    *("provider=null", "provider=", "provider=IDENFY", "provider=idenfy&provider=ondato"),
    *("kind=nope", "kind=", "status=nope", "status=APPROVED", "status="),
    *("limit=abc", "limit=1.5", "limit=0", "limit=-1", f"limit={listing.MAX_LIMIT + 1}"),
    *("limit=100000", "limit=%EF%BC%95", "limit=", "limit=+5", "limit=%205"),
    *("order=oldest", "order=", "order=key&order=newest"),
    *("updated_since=yesterday", "updated_since=", "updated_since=2026-13-01T00:00:00Z"),
    *("cursor=!!!", "cursor=Zm9v", "cursor=%C3%A9", "cursor=", f"cursor={NEWEST_CURSOR}"),
    *("reference=", "reference=a&reference=b", f"reference={'r' * 201}", "id=", "id=a&id=a"),
    f"order=newest&cursor={listing.encode_cursor({'subject': 'idenfy/kyc/x'}, 'key')}",
]
BAD_INPUT = [
    *(f"/verifications?{query}" for query in BAD_LISTINGS),
    *(f"/feed?after={value}" for value in ("abc", "-1", "1e3", "%C3%A9", "9" * 19)),
]


@pytest.mark.parametrize("url", BAD_INPUT)
def test_bad_filter_limit_order_time_cursor_or_resume_position_is_400(serve: Any, url: str) -> None:
    async def scenario(client: Client) -> None:
        assert (await get_json(client, url, 400))["error"]
        if url.startswith("/feed"):
            value = url.split("=", 1)[1]
            await get_json(client, "/feed", 400, headers={"Last-Event-ID": value})

    serve(scenario)


async def next_block(response: ClientResponse) -> list[str]:
    """The lines of the next SSE block (an event or a comment), up to the blank line."""
    lines: list[str] = []
    while True:
        line = (await asyncio.wait_for(response.content.readline(), 5)).decode().rstrip("\n")
        if line == "" and lines:
            return lines
        if line:
            lines.append(line)


async def next_event(response: ClientResponse) -> tuple[int, dict[str, Any]]:
    fields = dict(line.split(": ", 1) for line in await next_block(response))
    assert fields["event"] == "status"
    data = json.loads(fields["data"])
    assert int(fields["id"]) == data["seq"]
    return data["seq"], data


def feed_positions(db_path: Path) -> list[int]:
    db = open_projections(str(db_path))
    seqs = [row[0] for row in db.execute("SELECT seq FROM transitions ORDER BY seq").fetchall()]
    db.close()
    return seqs


def test_feed_resumes_after_last_event_id_without_gaps_or_repeats(
    db_path: Path, serve: Any
) -> None:
    expected = feed_positions(db_path)
    seen: list[int] = []

    async def scenario(client: Client) -> None:
        async with client.get("/feed") as response:
            assert response.headers["Content-Type"].startswith("text/event-stream")
            first = [await next_event(response) for _ in range(3)]
        assert first[0][1]["provider"] == "idenfy" and first[0][1]["offset"] == 1
        assert first[0][1]["reference"] == "client-42"  # the subject's, as now known
        resume = {"Last-Event-ID": str(first[-1][0])}
        async with client.get("/feed", headers=resume) as response:
            rest = [await next_event(response) for _ in expected[3:]]
            seen.extend(seq for seq, _ in first + rest)
            append(db_path, [p.ondato_kyb("Approved", "kyb-1", webhook_id="w-9")], 100)
            seq, live = await next_event(response)
        assert seq > expected[-1] and (live["id"], live["to_status"]) == ("kyb-1", "approved")
        assert live["reference"] is None

    serve(scenario)
    assert seen == expected


def test_feed_after_query_and_latest(db_path: Path, serve: Any) -> None:
    expected = feed_positions(db_path)

    async def scenario(client: Client) -> None:
        async with client.get("/feed", params={"after": str(expected[-2])}) as response:
            assert (await next_event(response))[0] == expected[-1]
        async with client.get("/feed?after=latest") as response:
            append(db_path, [p.ondato_kyb("Rejected", "kyb-1", webhook_id="w-8")], 200)
            assert (await next_event(response))[1]["to_status"] == "rejected"

    serve(scenario)


def test_idle_feed_sends_keep_alive_comments(serve: Any) -> None:
    async def scenario(client: Client) -> None:
        async with client.get("/feed?after=latest") as response:
            assert await next_block(response) == [": keep-alive"]

    serve(scenario, keepalive=0.05)


def test_feed_handler_ends_when_the_client_disconnects(serve: Any) -> None:
    finished: list[str] = []

    @web.middleware
    async def track(request: web.Request, handler: Callable[..., Awaitable[Any]]) -> Any:
        try:
            return await handler(request)
        finally:
            finished.append(request.path)

    async def scenario(client: Client) -> None:
        async with client.get("/feed") as response:
            await next_event(response)
        for _ in range(200):
            if finished:
                break
            await asyncio.sleep(0.01)
        assert finished == ["/feed"]

    serve(scenario, middlewares=[track])


READ_URLS = [
    f"/verifications/idenfy/kyc/{SCAN}",
    f"/verifications/idenfy/kyc/{SCAN}/history",
    "/verifications",
    "/metrics",
]


def test_a_configured_token_guards_every_read_route_but_healthz(serve: Any) -> None:
    async def scenario(client: Client) -> None:
        for url in [*READ_URLS, "/feed"]:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
                async with client.get(url, headers=headers) as response:
                    assert response.status == 401, url
                    assert response.headers["WWW-Authenticate"].startswith("Bearer")
                    assert "error" in await response.json()
        for url in READ_URLS:
            async with client.get(url, headers={"Authorization": f"bearer {TOKEN}"}) as ok:
                assert ok.status == 200, url
        assert (await get_json(client, "/healthz"))["status"] == "ok"
        await get_json(client, "/openapi.json")

    serve(scenario, api_token=TOKEN)


def test_the_token_is_compared_exactly_and_one_authorization_header_only(serve: Any) -> None:
    token = "dG9rZW4="  # base64 of "token": "dG9rZW5=" differs only in padding bits

    async def status(client: Client, *values: str) -> tuple[int, str]:
        headers = [("Authorization", value) for value in values]
        async with client.get("/verifications", headers=headers) as response:
            return response.status, (await response.json()).get("error", "")

    async def scenario(client: Client) -> None:
        assert (await status(client, f"Bearer {token}"))[0] == 200
        assert (await status(client, f"bearer   {token} "))[0] == 200  # 1*SP, then OWS
        for wrong in ("dG9rZW5=", "dG9rZW4", "dG9rZW4==", "dG9rZW4=\u00a0", "\u2003dG9rZW4="):
            assert await status(client, f"Bearer {wrong}") == (401, "invalid token"), wrong
        for pair in ((f"Bearer {token}", "Bearer wrong"), (f"Bearer {token}",) * 2):
            assert await status(client, *pair) == (401, "repeated Authorization header")

    serve(scenario, api_token=token)


def test_metrics_are_prometheus_text(serve: Any) -> None:
    async def scenario(client: Client) -> None:
        async with client.get("/metrics") as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
            assert await response.text() == METRICS

    serve(scenario)


def test_a_missing_database_is_503_until_it_appears(tmp_path: Path, serve: Any) -> None:
    path = tmp_path / "later.db"

    async def scenario(client: Client) -> None:
        health = await get_json(client, "/healthz")
        assert health["db"]["readable"] is False and "does not exist" in health["db"]["reason"]
        for url in [*READ_URLS[:3], "/feed"]:
            assert "reason" in await get_json(client, url, 503)
        assert "provider" in (await get_json(client, "/verifications?provider=x", 400))["error"]
        append(path, WEBHOOKS[:2], 1)
        assert (await get_json(client, "/healthz"))["db"] == {"readable": True, "feed_head": 2}
        await get_json(client, f"/verifications/idenfy/kyc/{SCAN}")

    serve(scenario, path)


def test_every_served_route_is_in_the_openapi_document(serve: Any) -> None:
    async def scenario(client: Client) -> None:
        assert client.app is not None
        for route in client.app.router.routes():
            path = route.resource.canonical if route.resource else ""
            assert route.method.lower() in OPENAPI["paths"].get(path, {}), (route.method, path)
        assert await get_json(client, "/openapi.json") == json.loads(json.dumps(OPENAPI))

    serve(scenario)
    assert {"/webhooks/{provider}", "/oauth/token"} <= set(OPENAPI["paths"])


def test_openapi_references_resolve() -> None:
    text = json.dumps(OPENAPI)
    refs = {part.split('"')[0] for part in text.split('"$ref": "#/components/schemas/')[1:]}
    assert refs and refs <= set(OPENAPI["components"]["schemas"])
    schemes = set(OPENAPI["components"]["securitySchemes"])
    for item in OPENAPI["paths"].values():
        for operation in item.values():
            for requirement in operation.get("security", OPENAPI["security"]):
                assert set(requirement) <= schemes


def test_queries_also_read_through_the_writers_database(db_path: Path) -> None:
    db = open_projections(str(db_path))
    try:
        found = queries.history(db, "ondato", "kyb_document", "doc-1")
        documents = queries.documents_of(db, "ondato", "kyb-1")
        feed = queries.feed_after(db, 0, 2)
    finally:
        db.close()
    assert found is not None and found["verification"]["parent_id"] == "kyb-1"
    assert [(d["id"], d["status"], d["final"]) for d in documents] == [
        ("doc-1", "need_review", False)
    ]
    assert [(row["id"], row["seq"]) for row in feed] == [(SCAN, 1), (SCAN, 2)]
