"""JSON refusals for requests no route takes: an unknown path (404) or method (405).

aiohttp answers them in plain text ("404: Not Found"); every other refusal of the API is
`{"error": reason}`, so a provider or integrator that mistypes a URL gets a reason too. The
console (`/ui/`) keeps aiohttp's answers: a browser shows them as they are.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
WEBHOOKS = "/webhooks/{provider}"


@web.middleware
async def json_refusals(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPMethodNotAllowed as exc:
        if request.path.startswith("/ui/"):
            raise
        allowed = ", ".join(sorted(exc.allowed_methods))
        reason = f"{request.method} is not allowed here; allowed: {allowed}"
        return _refusal(405, reason, {"Allow": allowed})
    except web.HTTPNotFound as exc:
        if request.path.startswith("/ui/") or exc.text != "404: Not Found":
            raise  # the console's, or a route's own 404 with its reason
        reason = f"no such route: {request.path[:200]}"
        if request.method == "POST" and "webhook" in request.path.lower():
            reason += f"; webhooks are posted to {WEBHOOKS}"
        return _refusal(404, reason)


def _refusal(status: int, reason: str, headers: dict[str, str] | None = None) -> web.Response:
    body = json.dumps({"error": reason})
    return web.Response(status=status, text=body, content_type="application/json", headers=headers)
