"""The `kycflow` command.

Today it offers what the core can do on its own: `kycflow normalise` shows what kycflow
makes of one webhook body — the canonical event and the status it would lead to — which
is how an operator checks a provider payload. The service commands (`serve`, `worker`,
`replay`, …) arrive with the embedded and Kafka runtimes.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from statemachines import RawEnvelope, Unrecognised, fold, normalise
from statemachines.envelope import PROVIDERS


def _normalise(args: argparse.Namespace) -> int:
    body = sys.stdin.buffer.read() if args.body == "-" else Path(args.body).read_bytes()
    headers = {"Idenfy-Event-Type": args.event_type} if args.event_type else {}
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    env = RawEnvelope.receive(args.provider, body, headers, now, auth_method="cli").at(0)
    result = normalise(env)
    out: dict[str, Any] = {"dedup_key": env.dedup_key}
    if isinstance(result, Unrecognised):
        out["unrecognised"] = result.reason
        print(json.dumps(out, indent=2))
        return 1
    out["event"] = _plain(result)
    outcome = fold(None, result)
    out["projection"] = outcome.state.public()
    print(json.dumps(out, indent=2, default=str))
    return 0


def _plain(data: Any) -> Any:
    """Named tuples (the core's records) as JSON objects, recursively."""
    if hasattr(data, "_asdict"):
        return _plain(data._asdict())
    if isinstance(data, dict):
        return {k: _plain(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_plain(v) for v in data]
    return data


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="kycflow", description=__doc__.splitlines()[0])
    commands = root.add_subparsers(dest="command", required=True)
    show = commands.add_parser(
        "normalise", help="show the canonical event and projection for one webhook body"
    )
    show.add_argument("provider", choices=PROVIDERS)
    show.add_argument("body", help="file with the raw body, or - for standard input")
    show.add_argument("--event-type", help="iDenfy's Idenfy-Event-Type header value")
    show.set_defaults(handler=_normalise)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
