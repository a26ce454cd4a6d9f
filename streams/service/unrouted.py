"""JSON refusals for requests no route takes: an unknown path (404) or method (405).

aiohttp's router answers them in plain text ("404: Not Found"); every other refusal of the
API is `{"error": reason}`, so a provider or integrator that mistypes a URL gets a reason
too. The console (`/ui/`) keeps aiohttp's answers: a browser shows them as they are.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from ingest.app import error

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
WEBHOOKS = "/webhooks/{provider}"


@web.middleware
async def json_refusals(request: web.Request, handler: Handler) -> web.StreamResponse:
    refused = request.match_info.http_exception  # set only when no route matched
    if refused is None or request.path.startswith("/ui/"):
        return await handler(request)
    if isinstance(refused, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(refused.allowed_methods))
        raise error(405, f"{request.method} is not allowed here; allowed: {allowed}", Allow=allowed)
    reason = f"no such route: {request.path[:200]}"
    if request.method == "POST" and "webhook" in request.path.lower():
        reason += f"; webhooks are posted to {WEBHOOKS}"
    raise error(refused.status, reason)
