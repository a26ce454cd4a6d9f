"""The `kycflow` command: serve, replay, inspect, simulate, normalise.

Configuration comes from the environment (design.md §6), over the first-run credentials
file beside the database; `kycflow COMMAND --help` describes each command.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from statemachines import RawEnvelope, Unrecognised, fold, normalise
from statemachines.envelope import PROVIDERS
from streams.cli import inspect as inspection
from streams.cli.kafka_commands import add_kafka_commands, kafka_settings
from streams.config import ConfigError, KycflowError, db_path, load_config
from streams.embedded import replay as replaying
from streams.kafka.config import KafkaSettings
from streams.simulator.simulate import add_parser as add_simulate

console = Console(stderr=True)


def _serve(args: argparse.Namespace) -> int:
    from streams.credentials import ensure_credentials
    from streams.service.supervisor import ServeSettings, serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    database = db_path(os.environ)
    try:  # refuse a bad configuration before writing anything
        settings = ServeSettings.from_config(load_config(os.environ, database))
    except ValueError as exc:
        console.print(f"[red]configuration error:[/] {exc}")
        return 2
    if (refusal := settings.refusal()) is not None:
        console.print(f"[red]{refusal}[/]")
        return 2
    created = ensure_credentials(load_config(os.environ, database), database)
    if created is not None:
        # Plain print: a path must not be wrapped mid-name in a log.
        print(
            f"No credentials were configured: generated provider credentials in {created} "
            "(mode 0600). `kycflow simulate` reads them; environment variables override "
            "them.",
            file=sys.stderr,
        )
        settings = ServeSettings.from_config(load_config(os.environ, database))
    return serve(settings, ready=lambda url: console.print(f"kycflow serving on {url}"))


def _replay(args: argparse.Namespace) -> int:
    if args.from_kafka:
        return _replay_kafka(args)
    database = db_path(os.environ)
    try:
        until = replaying.parse_until(args.until) if args.until else None
    except ValueError as exc:
        console.print(f"[red]--until:[/] {exc}")
        return 2
    try:
        total = replaying.total_events(database)
    except Exception as exc:
        console.print(f"[red]cannot read the raw log of {database}:[/] {exc}")
        return 2
    with _progress() as bar:
        task = bar.add_task("replay", total=total)
        count, path = replaying.replay(
            database, to=args.to, until=until, progress=lambda n: bar.advance(task, n)
        )
    console.print(f"replayed {count:,} raw webhooks into {path}")
    return 0


def _progress() -> Progress:
    """A progress bar on a terminal; nothing when output is piped or logged."""
    return Progress(
        "replay",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not console.is_terminal,
    )


def _replay_kafka(args: argparse.Namespace) -> int:
    from streams.kafka.replay import replay_from_kafka

    if not args.to or args.until:
        console.print("[red]replay --from-kafka needs --to PATH (a new file) and no --until[/]")
        return 2
    settings = kafka_settings()
    if settings is None:
        return 2
    with _progress() as bar:
        task = bar.add_task("replay", total=None)  # the topic's size is known only as read
        try:
            count = replay_from_kafka(settings, args.to, lambda n: bar.advance(task, n))
        except (FileExistsError, TimeoutError) as exc:
            console.print(f"[red]{exc}[/]")
            return 2
    console.print(f"replayed {count:,} raw webhooks from {settings.topic('raw')} into {args.to}")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    kafka = KafkaSettings.from_config(load_config(os.environ))
    raw = None
    if kafka is not None:  # Kafka mode: the raw deliveries are in the raw topic
        from streams.kafka.replay import fetch_positions

        raw = functools.partial(fetch_positions, kafka)
    found = inspection.timeline(db_path(os.environ), args.provider, args.kind, args.id, raw)
    if found is None:
        console.print(f"[red]no such subject:[/] {args.provider}/{args.kind}/{args.id}")
        return 1
    if args.json:
        print(inspection.as_json(found))
    else:
        # Piped output gets a wide, fixed width instead of rich's 80-column guess.
        inspection.render(found, Console() if sys.stdout.isatty() else Console(width=200))
    return 0


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
    out["projection"] = fold(None, result).state.public()
    print(json.dumps(out, indent=2, default=str))
    return 0


def _plain(data: Any) -> Any:
    """Named tuples (the core's records) as JSON objects, recursively."""
    if hasattr(data, "_asdict"):
        return _plain(data._asdict())
    if isinstance(data, dict):
        return {k: _plain(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_plain(v) for v in data]
    return data


SERVE_HELP = """Run kycflow in embedded mode: HTTP ingest for iDenfy, Ondato and IDWise, a
durable SQLite raw log (KYCFLOW_DB's .raw.db), the processor and the read API, on
KYCFLOW_HOST:KYCFLOW_PORT (default 127.0.0.1:8080). With no credentials configured, the first
run generates them beside the database. Configuration: environment variables (README)."""
NORMALISE_HELP = """Print the canonical event and the projection kycflow makes of one raw
webhook body (no server needed): the way to check a provider payload."""


def _command(
    commands: Any, name: str, summary: str, description: str | None
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        name,
        help=summary,
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="kycflow", description="KYC/KYB webhooks in, trustworthy verification status out."
    )
    commands = root.add_subparsers(dest="command", required=True)
    serve = _command(
        commands, "serve", "run the embedded service on KYCFLOW_HOST:KYCFLOW_PORT", SERVE_HELP
    )
    serve.set_defaults(handler=_serve)
    replay = _command(
        commands, "replay", "rebuild the projections from the raw log", replaying.__doc__
    )
    replay.add_argument(
        "--until",
        help="only webhooks received up to this ISO-8601 time "
        "(e.g. 2026-11-22T10:00:00Z): the state as of then",
    )
    replay.add_argument("--to", help="write the rebuilt projections to this file instead")
    replay.add_argument(
        "--from-kafka",
        action="store_true",
        help="re-fold the Kafka raw topic (KYCFLOW_KAFKA_BOOTSTRAP) into --to, a new file",
    )
    replay.set_defaults(handler=_replay)
    inspect = _command(
        commands, "inspect", "explain why a verification is in its state", inspection.__doc__
    )
    inspect.add_argument("provider", choices=PROVIDERS)
    inspect.add_argument("kind", help="kyc, kyb, kyb_document, aml_monitoring, …")
    inspect.add_argument("id")
    inspect.add_argument("--json", action="store_true", help="machine-readable output")
    inspect.set_defaults(handler=_inspect)
    show = _command(
        commands, "normalise", "show what kycflow makes of one webhook body", NORMALISE_HELP
    )
    show.add_argument("provider", choices=PROVIDERS)
    show.add_argument("body", help="file with the raw body, or - for standard input")
    show.add_argument("--event-type", help="iDenfy's Idenfy-Event-Type header value")
    show.set_defaults(handler=_normalise)
    add_simulate(commands)
    add_kafka_commands(commands, _command)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except ConfigError as exc:
        console.print(f"[red]configuration error:[/] {exc}")
        return 2
    except KycflowError as exc:
        console.print(f"[red]kycflow:[/] {exc}", highlight=False)
        return 1


if __name__ == "__main__":
    sys.exit(main())
