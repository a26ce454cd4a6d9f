"""The console's pages, mounted on the HTTP worker's application by `setup_console`."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web

from ingest import rawlog
from ingest.auth import client_address
from projections import listing
from projections import queries as projected
from projections.api import ReadApi, Reader, Unavailable
from statemachines import RawEnvelope
from streams.cli import inspect
from streams.console import auth, erasure, masking, reprocess
from streams.console import queries as extra
from streams.console.settings import ConsoleSettings
from streams.console.throttle import LoginBudget

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Raw = Callable[[list[int]], dict[int, RawEnvelope]]

log = logging.getLogger("kycflow.console")
STATIC = Path(__file__).with_name("static")
# No inline script or style at all: nothing a webhook field injects can run.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}
PAGE_SIZE = 50
REPROCESS_WAIT = 5.0  # seconds to wait for the processor to apply re-delivered webhooks
WAIT_LIMIT = timedelta(days=1)


def _tolerant(read: Raw) -> Raw:
    """Raw bodies when they can be read; none (the pages say so) when the raw log or the
    broker cannot be read right now, rather than an error page for the whole timeline."""

    def tolerant(offsets: list[int]) -> dict[int, RawEnvelope]:
        try:
            return read(offsets)
        except Exception as exc:  # sqlite3, kafka-python or OS errors alike
            log.warning("console: raw deliveries unreadable (%s)", type(exc).__name__)
            return {}

    return tolerant


class Console:
    def __init__(
        self,
        db_path: str,
        guard: auth.Guard,
        raw: Raw | None,
        gauges: Callable[[], dict[str, float]],
        appender: reprocess.Appender | None = None,
        clock: Callable[[], str] = str,
        settings: ConsoleSettings | None = None,
    ) -> None:
        self.db_path, self.guard, self.gauges = db_path, guard, gauges
        self.settings = settings or ConsoleSettings()
        self.logins = LoginBudget()
        self.appender, self.clock = appender, clock
        self.raw = _tolerant(raw or rawlog.reader(db_path))
        self.reader = Reader(db_path)
        self.feed_api = ReadApi(self.reader, str, poll=0.2, keepalive=15.0)

    # -- plumbing ------------------------------------------------------------------------

    def page(self, handler: Handler, *, public: bool = False) -> Handler:
        """Authentication, security headers and the 503 page around a handler."""

        async def wrapped(request: web.Request) -> web.StreamResponse:
            if not public and not self.guard.allowed(request):
                response = self._refuse(request)
            else:
                try:
                    response = await handler(request)
                except Unavailable as exc:
                    response = self.render(request, "error.html", {"message": str(exc)}, 503)
            if not response.prepared:  # the feed's stream has sent its headers already
                for name, value in SECURITY_HEADERS.items():
                    response.headers.setdefault(name, value)
            return response

        return wrapped

    def _refuse(self, request: web.Request) -> web.StreamResponse:
        if request.method == "GET" and request.path != "/ui/feed":
            login = "/ui/login?" + _query({"next": request.path_qs})
            return web.Response(status=303, headers={"Location": login})
        response = web.Response(status=401, text="login required\n")
        response.headers["WWW-Authenticate"] = 'Bearer realm="kycflow"'
        return response

    def secure(self, request: web.Request) -> bool:
        """Whether cookies get `Secure`: the request came over TLS, or the operator said
        so (KYCFLOW_CONSOLE_SECURE_COOKIE, for a TLS proxy in front)."""
        return request.secure or self.settings.secure_cookie

    def render(
        self, request: web.Request, template: str, context: dict[str, Any], status: int = 200
    ) -> web.Response:
        token = auth.csrf_token(request)
        context = {
            **context,
            "csrf": token,
            "open": self.guard.open,
            "bearer": not self.guard.open and self.guard.bearer(request),
        }
        response = aiohttp_jinja2.render_template(template, request, context, status=status)
        if request.cookies.get(auth.CSRF_COOKIE) != token:
            auth.set_csrf_cookie(response, token, self.secure(request))
        return response

    async def _form(self, request: web.Request) -> dict[str, str] | None:
        """The POSTed form when its CSRF value matches, else None."""
        try:
            form = await request.post()
        except (ValueError, web.HTTPException):
            return None
        values = {k: v for k, v in form.items() if isinstance(v, str)}
        return values if auth.csrf_ok(request, values.get("csrf", ""), self.guard) else None

    def _forbidden(self, request: web.Request) -> web.Response:
        message = "The form expired or came from another site. Reload the page and try again."
        return self.render(request, "error.html", {"message": message}, 403)

    # -- login -----------------------------------------------------------------------------

    async def login_form(self, request: web.Request) -> web.StreamResponse:
        if self.guard.open:
            raise web.HTTPSeeOther("/ui/")
        return self.render(request, "login.html", {"next": _next(request.query.get("next"))})

    async def login(self, request: web.Request) -> web.StreamResponse:
        if self.guard.open:
            raise web.HTTPSeeOther("/ui/")
        address = client_address(
            request.remote or "", request.headers, self.settings.trusted_proxies
        )
        wait = self.logins.retry_after(address)
        if wait:  # not even compared: past the budget the right token waits too
            return self._too_many(request, wait)
        form = await self._form(request)
        if form is None:
            return self._forbidden(request)
        target = _next(form.get("next"))
        if not self.guard.token_valid(form.get("token", "")):
            if self.logins.failed(address):  # the address's budget just ran out
                log.warning("console: too many wrong tokens at /ui/login; refusing for a while")
            context = {"next": target, "failed": True}
            return self.render(request, "login.html", context, 401)
        response = web.Response(status=303, headers={"Location": target})
        response.set_cookie(
            auth.SESSION_COOKIE,
            self.guard.new_session(),
            max_age=auth.SESSION_SECONDS,
            httponly=True,
            samesite="Strict",
            path="/ui/",
            secure=self.secure(request),
        )
        return response

    def _too_many(self, request: web.Request, wait: int) -> web.Response:
        message = f"Too many wrong tokens from your address. Try again in {wait} seconds."
        response = self.render(request, "error.html", {"message": message}, 429)
        response.headers["Retry-After"] = str(wait)
        return response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        if await self._form(request) is None:
            return self._forbidden(request)
        response = web.Response(status=303, headers={"Location": "/ui/login"})
        response.del_cookie(auth.SESSION_COOKIE, path="/ui/", secure=self.secure(request))
        return response

    # -- pages -----------------------------------------------------------------------------

    async def overview(self, request: web.Request) -> web.StreamResponse:
        now = datetime.now(UTC)

        def read(db: Any) -> dict[str, Any]:
            return {
                "counts": _pivot(extra.counts(db)),
                "waiting": extra.waiting(db, WAIT_LIMIT, now),
                "waiting_count": extra.waiting_count(db, WAIT_LIMIT, now),
                "waiting_cap": extra.WAITING_CAP,
                "quarantine": extra.quarantine_size(db),
                "last_minute": extra.recent_rate(db, now),
                "recent": extra.recent_transitions(db),
                "feed_head": projected.feed_head(db),
            }

        context = self.reader.run(read)
        context["gauges"] = self.gauges()
        projector = self.settings.projector
        context["projector"] = (
            None if projector is None else await asyncio.to_thread(projector.read)
        )
        return self.render(request, "overview.html", context)

    async def search(self, request: web.Request) -> web.StreamResponse:
        q = request.query.get("q", "").strip()
        filters = {
            name: value
            for name in ("provider", "kind", "status", "cursor")
            if (value := request.query.get(name, ""))
        }
        context: dict[str, Any] = {"q": q, "filters": filters, "choices": listing.FILTERS}
        try:
            wanted = listing.parse([*filters.items(), ("order", "newest"), ("limit", "50")])
        except ValueError as exc:
            context.update(items=[], error=str(exc))
            return self.render(request, "search.html", context, 400)
        if q:
            items = self.reader.run(extra.by_provider_id, q[:200], wanted.provider)
            items += self._by_reference(q, filters)
            unique = {(i["provider"], i["kind"], i["id"]): i for i in items if _matches(i, wanted)}
            context.update(items=list(unique.values()), next_cursor=None)
        else:
            found = self.reader.run(listing.page, wanted)
            context.update(items=found["items"], next_cursor=found["next_cursor"])
        if context.get("next_cursor"):
            context["next_query"] = _query({**filters, "cursor": context["next_cursor"]})
        return self.render(request, "search.html", context)

    def _by_reference(self, q: str, filters: dict[str, str]) -> list[dict[str, Any]]:
        """Verifications carrying the integrator's reference `q`, where the projections
        know references (the listing's `reference` filter; absent from older versions)."""
        if "reference" not in listing.PARAMETERS:
            return []
        pairs = [(k, v) for k, v in filters.items() if k != "cursor"]
        try:
            wanted = listing.parse([*pairs, ("reference", q), ("order", "newest")])
        except ValueError:  # e.g. longer than any stored reference: none can match
            return []
        found: list[dict[str, Any]] = self.reader.run(listing.page, wanted)["items"]
        return found

    async def timeline(self, request: web.Request) -> web.StreamResponse:
        info = request.match_info
        subject = (info["provider"], info["kind"], info["id"])
        history = self.reader.run(projected.history, *subject)
        if history is None:
            missing = {"message": f"No verification {projected.subject_key(*subject)}."}
            return self.render(request, "error.html", missing, 404)
        try:
            found = await asyncio.to_thread(inspect.timeline, self.db_path, *subject, self.raw)
        except sqlite3.Error as exc:
            raise Unavailable(f"projections not readable: {exc}") from None
        steps = found["timeline"] if found else []
        documents = (
            self.reader.run(projected.documents_of, subject[0], subject[2])
            if subject[1] == "kyb"
            else []
        )
        context: dict[str, Any] = {
            "v": history["verification"],
            "erasure": erasure.erasure_of(history["verification"], steps),
            "transitions": history["transitions"],
            "steps": steps,
            "documents": documents,
            "feed_head": self.reader.run(projected.feed_head),
        }
        return self.render(request, "timeline.html", context)

    async def raw_body(self, request: web.Request) -> web.StreamResponse:
        text = request.match_info["offset"]
        if not (text.isascii() and text.isdigit() and len(text) <= 18):
            return self.render(request, "error.html", {"message": "No such delivery."}, 404)
        offset = int(text)
        reveal = False
        if request.method == "POST":
            if await self._form(request) is None:
                return self._forbidden(request)
            reveal = True
        what = self.reader.run(extra.delivery, offset)
        envelopes = await asyncio.to_thread(self.raw, [offset])
        envelope = envelopes.get(offset)
        if envelope is None:
            return self.render(request, "error.html", {"message": "No such delivery."}, 404)
        context = {"env": envelope, "what": what, "subject": (what or {}).get("subject")}
        if erasure.reduced(envelope):  # the body is gone: nothing to mask or reveal
            context.update(erased=True, kept=erasure.kept_event(envelope), revealed=False)
        else:
            body, masked = masking.pretty(envelope.body, reveal)
            context.update(erased=False, body=body, masked=masked, revealed=reveal)
        return self.render(request, "raw.html", context)

    async def deliveries(self, request: web.Request) -> web.StreamResponse:
        before_text = request.query.get("before", "")
        before = None
        if before_text:
            if not (before_text.isascii() and before_text.isdigit() and len(before_text) <= 18):
                context = {"message": "before must be a raw log offset (a whole number)."}
                return self.render(request, "error.html", context, 400)
            before = int(before_text)
        items = self.reader.run(extra.deliveries, before, PAGE_SIZE + 1)
        more = len(items) > PAGE_SIZE
        items = items[:PAGE_SIZE]
        for item in items:
            if item["subject"]:
                item["provider"], item["kind"], item["id"] = item["subject"].split("/", 2)
        next_before = items[-1]["offset"] if more and items else None
        return self.render(request, "deliveries.html", {"items": items, "next": next_before})

    async def quarantine(self, request: web.Request) -> web.StreamResponse:
        rows, assessed = await self._assess()
        context = {"items": rows, "assessed": assessed, "can_reprocess": self.appender is not None}
        return self.render(request, "quarantine.html", context)

    async def _assess(self) -> tuple[list[dict[str, Any]], dict[int, reprocess.Assessment]]:
        rows = self.reader.run(extra.quarantined)
        envelopes = await asyncio.to_thread(self.raw, [row["offset"] for row in rows])
        assessed = self.reader.run(reprocess.assess, rows, envelopes)
        return rows, {item.offset: item for item in assessed}

    async def reprocess(self, request: web.Request) -> web.StreamResponse:
        """Re-deliver every quarantined delivery the current code reads; report each outcome."""
        if await self._form(request) is None:
            return self._forbidden(request)
        if self.appender is None:
            message = "Reprocessing needs the service's raw log appender; use kycflow serve."
            return self.render(request, "error.html", {"message": message}, 409)
        rows, assessed = await self._assess()
        sent = await reprocess.redeliver(list(assessed.values()), self.appender, self.clock)
        outcomes = await self._outcomes(sent)
        if "application/json" in request.headers.get("Accept", ""):  # kycflow quarantine
            return web.json_response({"reprocessed": _reprocessed(sent, outcomes)})
        context = {"rows": rows, "assessed": assessed, "sent": sent, "outcomes": outcomes}
        return self.render(request, "reprocessed.html", context)

    async def _outcomes(self, sent: dict[int, int]) -> dict[int, dict[str, Any] | None]:
        """Each new offset's outcome, waiting a bounded time for the processor to apply it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + REPROCESS_WAIT
        outcomes: dict[int, dict[str, Any] | None] = dict.fromkeys(sent.values())
        while True:
            for offset in [o for o, found in outcomes.items() if found is None]:
                outcomes[offset] = self.reader.run(reprocess.outcome, offset)
            if all(outcomes.values()) or loop.time() >= deadline:
                return outcomes
            await asyncio.sleep(0.05)

    async def feed(self, request: web.Request) -> web.StreamResponse:
        return await self.feed_api.feed(request)


def _reprocessed(
    sent: dict[int, int], outcomes: dict[int, dict[str, Any] | None]
) -> list[dict[str, Any]]:
    empty = {"subject": None, "effect": None, "reason": None}
    return [
        {"quarantined_offset": old, "offset": new, **(outcomes.get(new) or empty)}
        for old, new in sent.items()
    ]


def _pivot(counts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Counts grouped per provider and kind: one row each, statuses as a list, with a total."""
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for row in counts:
        group = groups.setdefault(
            (row["provider"], row["kind"]),
            {"provider": row["provider"], "kind": row["kind"], "statuses": [], "total": 0},
        )
        group["statuses"].append((row["status"] or "(none)", row["n"]))
        group["total"] += row["n"]
    return list(groups.values())


def _matches(item: dict[str, Any], wanted: listing.Listing) -> bool:
    return all(
        getattr(wanted, name) in (None, item[name]) for name in ("provider", "kind", "status")
    )


def _next(target: str | None) -> str:
    """Only a console path: never an open redirect to another site."""
    if target and target.startswith("/ui/") and "//" not in target and "\\" not in target:
        return target
    return "/ui/"


def _query(params: dict[str, str]) -> str:
    from urllib.parse import urlencode

    return urlencode(params)


def setup_console(
    app: web.Application,
    db_path: str,
    *,
    api_token: str | None,
    raw: Raw | None = None,
    gauges: Callable[[], dict[str, float]] = dict,
    appender: reprocess.Appender | None = None,
    clock: Callable[[], str] = str,
    settings: ConsoleSettings | None = None,
) -> None:
    """Mount the console under `/ui/` on `app` (templates, static assets, pages).

    `raw` reads raw deliveries by offset (Kafka mode); None reads the embedded raw log.
    `appender` and `clock` (ingest's) re-deliver quarantined webhooks; without them the
    quarantine is shown but not reprocessed. `settings` default to kycflow's configuration
    for the database (`ConsoleSettings.load`).
    """
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader("streams.console", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    settings = settings or ConsoleSettings.load(db_path)
    console = Console(db_path, auth.Guard(api_token), raw, gauges, appender, clock, settings)
    page = console.page
    app.router.add_static("/ui/static/", STATIC, append_version=False)
    app.add_routes(
        [
            web.get("/ui", _to_console, allow_head=False),
            web.get("/ui/login", page(console.login_form, public=True), allow_head=False),
            web.post("/ui/login", page(console.login, public=True)),
            web.post("/ui/logout", page(console.logout, public=True)),
            web.get("/ui/", page(console.overview), allow_head=False),
            web.get("/ui/verifications", page(console.search), allow_head=False),
            web.get(
                "/ui/verifications/{provider}/{kind}/{id}",
                page(console.timeline),
                allow_head=False,
            ),
            web.get("/ui/deliveries/{offset}", page(console.raw_body), allow_head=False),
            web.post("/ui/deliveries/{offset}", page(console.raw_body)),
            web.get("/ui/deliveries", page(console.deliveries), allow_head=False),
            web.get("/ui/quarantine", page(console.quarantine), allow_head=False),
            web.post("/ui/quarantine", page(console.reprocess)),
            web.get("/ui/feed", page(console.feed), allow_head=False),
        ]
    )


async def _to_console(request: web.Request) -> web.StreamResponse:
    return web.Response(status=308, headers={"Location": "/ui/"})
