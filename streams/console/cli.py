"""`kycflow quarantine list|reprocess`: the console's quarantine page on the command line.

`list` reads the projections database (read-only) and the raw bodies as `kycflow inspect`
does, and says what the code installed now makes of each quarantined delivery.
`reprocess` asks the running service to re-deliver the readable ones (the same action as
the console's button: only the service appends to the raw log) and prints what each became.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sqlite3
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from projections.queries import Connection
from streams import masterkeys
from streams.cli import environment
from streams.cli.arguments import database
from streams.config import KycflowError, db_path, load_config
from streams.console import queries, reprocess
from streams.console.routes import Raw

VARIABLES: environment.Variables = {
    **environment.DATABASE,
    "KYCFLOW_HOST": "the running service's address, for reprocess (default 127.0.0.1)",
    "KYCFLOW_PORT": "the running service's port, for reprocess (default 8080)",
    "KYCFLOW_API_TOKEN": "bearer token of the running service, for reprocess",
    **environment._kafka(),
}
LIMIT = 10_000
HELP = """List the quarantined webhooks with what the installed code makes of each (list:
reads the database, as kycflow inspect does), or have the running service re-deliver the
ones it can now read and print what each became (reprocess)."""


def add_quarantine(commands: Any, command: Callable[..., argparse.ArgumentParser]) -> None:
    parser = command(
        commands,
        "quarantine",
        "list the quarantined webhooks, or reprocess them after a fix",
        HELP,
        VARIABLES,
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="what the installed code makes of each one")
    listing.add_argument(
        "--db", type=database, metavar="PATH", help="the projections database (KYCFLOW_DB)"
    )
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(handler=run_list)
    again = actions.add_parser("reprocess", help="re-deliver the readable ones (service runs)")
    again.add_argument("--url", help="the service, default http://KYCFLOW_HOST:KYCFLOW_PORT")
    again.add_argument("--json", action="store_true", help="machine-readable output")
    again.set_defaults(handler=run_reprocess)


def _environment(args: argparse.Namespace) -> dict[str, str]:
    env = dict(os.environ)
    if getattr(args, "db", None) is not None:
        env["KYCFLOW_DB"] = str(args.db)
    return env


def run_list(args: argparse.Namespace) -> int:
    env = _environment(args)
    path = db_path(env)
    if not Path(path).is_file():
        raise KycflowError(f"no projections database at {Path(path).absolute()}")
    raw: Raw = masterkeys.raw_reader(load_config(env, path), path)
    uri = f"{Path(path).absolute().as_uri()}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
        items = assessed(db, raw)
    if args.json:
        print(json.dumps(items, indent=2))
    else:
        for item in items:
            print(
                f"{item['offset']}\t{item['received_at']}\t{item['provider']}\t"
                f"{item['event_type'] or '-'}\t{item['reason']}\t-> {_now(item)}"
            )
        print(f"{len(items)} quarantined")
    return 0


def assessed(db: Connection, raw: Raw) -> list[dict[str, Any]]:
    rows = queries.quarantined(db, LIMIT)
    found = reprocess.assess(db, rows, raw([row["offset"] for row in rows]))
    return [
        {**row, "now": item.state, "subject": item.subject, "still": item.reason}
        for row, item in zip(rows, found, strict=True)
    ]


def _now(item: dict[str, Any]) -> str:
    if item["now"] == reprocess.UNREADABLE:
        return f"still unreadable: {item['still']}"
    if item["now"] == reprocess.MISSING:
        return "raw body not available"
    if item["now"] == reprocess.ERASED:
        return "personal data erased; nothing to reprocess"
    verb = "reprocessed into" if item["now"] == reprocess.DONE else "readable, for"
    return f"{verb} {item['subject']}"


def run_reprocess(args: argparse.Namespace) -> int:
    config = load_config(_environment(args))
    url = (args.url or _local_url(config)).rstrip("/")
    token = config.get("KYCFLOW_API_TOKEN") or None
    found = post_reprocess(url, token)
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    for item in found["reprocessed"]:
        became = item["subject"] or "quarantine"
        detail = f" ({item['reason']})" if item.get("reason") else ""
        print(
            f"{item['quarantined_offset']} -> {item['offset']}: {became} "
            f"{item['effect'] or 'not applied yet'}{detail}"
        )
    print(f"{len(found['reprocessed'])} re-delivered")
    return 0


def _local_url(config: dict[str, str]) -> str:
    host = config.get("KYCFLOW_HOST") or "127.0.0.1"
    host = "127.0.0.1" if host in ("0.0.0.0", "") else host
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{config.get('KYCFLOW_PORT') or 8080}"


def post_reprocess(url: str, token: str | None) -> dict[str, Any]:
    """POST /ui/quarantine as the console's button does: with the bearer token, or (open
    service) with the CSRF cookie a GET hands out."""
    headers = {"Accept": "application/json"}
    body = b""
    if token:
        headers["Authorization"] = f"Bearer {token}"
    else:
        csrf = _csrf(url)
        headers["Cookie"] = f"kycflow_csrf={csrf}"
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        body = f"csrf={csrf}".encode()
    request = urllib.request.Request(url + "/ui/quarantine", body, headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            answer: dict[str, Any] = json.loads(response.read())
            return answer
    except urllib.error.HTTPError as exc:
        raise KycflowError(f"{url} answered {exc.code} to reprocess") from None
    except (OSError, ValueError) as exc:
        raise KycflowError(f"cannot reach the service at {url}: {exc}") from None


def _csrf(url: str) -> str:
    try:
        with urllib.request.urlopen(url + "/ui/quarantine", timeout=10) as response:
            for cookie in response.headers.get_all("Set-Cookie") or []:
                name, _, rest = cookie.partition("=")
                if name.strip() == "kycflow_csrf":
                    return str(rest.split(";", 1)[0])
    except OSError as exc:
        raise KycflowError(f"cannot reach the service at {url}: {exc}") from None
    raise KycflowError(f"{url} handed out no CSRF cookie")
