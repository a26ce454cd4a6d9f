"""The `kycflow` command: serve, replay, inspect, simulate, normalise, and Kafka mode's.

Configuration comes from the environment (design.md §6), over the first-run credentials
file beside the database; a flag wins over its variable. `kycflow COMMAND --help`
describes each command and lists the variables it reads.

A failure an operator can cause (a bad path, a port in use, a broker that does not answer)
ends as one line on stderr and a non-zero exit, never a traceback: 1 when the command could
not do its work or the reader of its output went away (`| head`: then quietly), 2 for a
bad invocation or configuration, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import logging
import os
import sqlite3
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from ingest import rawlog, sealing
from projections.locking import tidy
from statemachines import RawEnvelope, Unrecognised, fold, normalise
from statemachines.envelope import PROVIDERS
from streams import masterkeys
from streams.cli import environment
from streams.cli import inspect as inspection
from streams.cli.arguments import HelpFormatter, database, port, reference, whole_number
from streams.cli.erasure_commands import add_erasure_commands
from streams.cli.failures import database_problem, describe, host_problem, quiet_broken_pipe
from streams.cli.kafka_commands import add_kafka_commands, kafka_settings
from streams.config import ConfigError, KycflowError, db_path, load_config
from streams.console.cli import add_quarantine
from streams.embedded import replay as replaying
from streams.simulator.simulate import add_parser as add_simulate

# soft_wrap: a message is one line however narrow the terminal (or 80 columns when piped).
console = Console(stderr=True, soft_wrap=True, highlight=False)
FLAGS = {"db": "KYCFLOW_DB", "host": "KYCFLOW_HOST", "port": "KYCFLOW_PORT"} | {
    "workers": "KYCFLOW_WORKERS"
}


def _environment(args: argparse.Namespace) -> dict[str, str]:
    """The environment with the command's flags applied: a flag wins over its variable."""
    env = dict(os.environ)
    for flag, variable in FLAGS.items():
        if getattr(args, flag, None) is not None:
            env[variable] = str(getattr(args, flag))
    return env


def _fail(message: str, code: int = 1) -> int:
    console.print(f"[red]kycflow:[/] {message}", markup=True)
    return code


def _serve(args: argparse.Namespace) -> int:
    from streams.console.settings import ConsoleSettings
    from streams.credentials import ensure_credentials
    from streams.service.supervisor import ServeSettings, serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    env = _environment(args)
    database = db_path(env)
    if (problem := database_problem(database, create=True)) is not None:
        return _fail(problem, 2)
    try:  # refuse a bad configuration before writing anything
        settings = ServeSettings.from_config(load_config(env, database))
        ConsoleSettings.from_config(load_config(env, database))  # each worker reads it again
    except (ValueError, ConfigError) as exc:
        console.print(f"[red]configuration error:[/] {exc}")
        return 2
    if (problem := host_problem(settings.host, settings.port)) is not None:
        return _fail(problem, 2)
    if (refusal := settings.refusal()) is not None:
        console.print(f"[red]{refusal}[/]")
        return 2

    def first_run() -> ServeSettings:
        """Generate credentials if none are configured; called once the database and the
        port are ours, so a refused start writes nothing."""
        created = ensure_credentials(load_config(env, database), database)
        config = load_config(env, database)
        master, key_file = masterkeys.for_serving(config, database)
        # Plain prints: a path must not be wrapped mid-name in a log.
        if created is not None:
            print(
                f"No credentials were configured: generated provider credentials in {created} "
                "(mode 0600). kycflow simulate reads them; environment variables override them.",
                file=sys.stderr,
            )
        if key_file is not None:
            print(
                f"Generated a master key in {key_file} (mode 0600): raw webhooks are stored "
                "encrypted under it. Keep a copy apart from the database; without it the raw "
                "log cannot be read.",
                file=sys.stderr,
            )
        final = settings if created is None else ServeSettings.from_config(config)
        return dataclasses.replace(final, master=master, seal=sealing.encryption_enabled(config))

    try:
        return serve(settings, first_run=first_run)  # it says where it listens, once
    except sqlite3.Error as exc:  # e.g. a read-only file system that os.access misses
        return _fail(describe(exc, database))
    except OSError as exc:
        if exc.filename is not None:
            raise  # a file: main names it
        reason = exc.strerror or str(exc)
        return _fail(f"cannot listen on {settings.host}:{settings.port}: {reason}")


def _replay(args: argparse.Namespace) -> int:
    if args.from_kafka:
        return _replay_kafka(args)
    database = db_path(_environment(args))
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
    target = args.to or database
    if (problem := database_problem(target, create=True)) is not None:
        return _fail(problem, 2)
    try:
        with _progress() as bar:
            task = bar.add_task("replay", total=total)
            count, path = replaying.replay(
                database,
                to=args.to,
                until=until,
                progress=lambda n: bar.advance(task, n),
                master=masterkeys.for_reading(load_config(_environment(args), database), database),
            )
    except (OSError, sqlite3.Error) as exc:
        return _fail(describe(exc, target))
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
    from streams.kafka.keys import master_from_env
    from streams.kafka.replay import replay_from_kafka

    if not args.to or args.until:
        console.print("[red]replay --from-kafka needs --to PATH (a new file) and no --until[/]")
        return 2
    settings = kafka_settings()
    if settings is None:
        return 2
    env = _environment(args)
    config = load_config(env, db_path(env))
    master = master_from_env(config, db_path(env))
    with _progress() as bar:
        task = bar.add_task("replay", total=None)  # the topic's size is known only as read
        try:
            count = replay_from_kafka(
                settings, args.to, lambda n: bar.advance(task, n), master=master
            )
        except (FileExistsError, TimeoutError) as exc:
            console.print(f"[red]{exc}[/]")
            return 2
    console.print(f"replayed {count:,} raw webhooks from {settings.topic('raw')} into {args.to}")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    if (usage := _inspect_usage(args)) is not None:
        return _fail(usage, 2)
    env = _environment(args)
    database = db_path(env)
    if (problem := database_problem(database, create=False)) is not None:
        return _fail(problem)
    raw = masterkeys.raw_reader(load_config(env, database), database)
    try:  # read-only readers cannot remove the -wal/-shm they found or made: tidy after
        return _inspect_subjects(args, database, raw)
    finally:
        tidy(database)
        tidy(rawlog.raw_log_path(database))


def _inspect_subjects(args: argparse.Namespace, database: str, raw: Any) -> int:
    if args.reference is not None:
        return _inspect_reference(args, database, raw)
    try:
        found = inspection.timeline(database, args.provider, args.kind, args.id, raw)
    except sqlite3.Error as exc:
        return _fail(describe(exc, database))
    if found is None:
        subject = f"{args.provider}/{args.kind}/{args.id}"
        return _fail(f"no such subject: {subject} in {Path(database).absolute()}")
    if args.json:
        print(inspection.as_json(found))
    else:
        inspection.render(found, _stdout())
    return 0


def _inspect_reference(args: argparse.Namespace, database: str, raw: Any) -> int:
    try:
        found = inspection.with_reference(database, args.reference, raw)
    except sqlite3.Error as exc:
        return _fail(describe(exc, database))
    if not found:
        return _fail(f"no subject with reference {args.reference!r} in {Path(database).absolute()}")
    if args.json:
        print(inspection.all_as_json(args.reference, found))
    else:
        inspection.render_all(args.reference, found, _stdout())
    return 0


def _stdout() -> Console:
    # Piped output gets a wide, fixed width instead of rich's 80-column guess.
    return Console() if sys.stdout.isatty() else Console(width=200)


def _normalise(args: argparse.Namespace) -> int:
    try:
        body = sys.stdin.buffer.read() if args.body == "-" else Path(args.body).read_bytes()
    except OSError as exc:
        return _fail(f"cannot read the body: {describe(exc, args.body)}")
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
durable SQLite raw log beside the database, the processor and the read API, on
127.0.0.1:8080 unless told otherwise. With KYCFLOW_KAFKA_BOOTSTRAP set it runs Kafka
mode's ingest and read API instead (kycflow worker and kycflow project do the rest).
With no credentials configured, the first run generates them beside the database."""
NORMALISE_HELP = """Print the canonical event and the projection kycflow makes of one raw
webhook body (no server needed): the way to check a provider payload."""


def _command(
    commands: Any,
    name: str,
    summary: str,
    description: str | None,
    variables: environment.Variables = environment.NONE,
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        name,
        help=summary,
        description=description,
        epilog=environment.epilog(variables),
        formatter_class=HelpFormatter,
    )
    return parser


def _database_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db", type=database, metavar="PATH", help="the projections database (KYCFLOW_DB)"
    )


def _add_serve(commands: Any) -> None:
    serve = _command(
        commands,
        "serve",
        "run the service (embedded mode, or Kafka mode's ingest)",
        SERVE_HELP,
        environment.SERVE,
    )
    _database_flag(serve)
    add = serve.add_argument
    add("--host", metavar="ADDRESS", help="address to listen on (KYCFLOW_HOST, 127.0.0.1)")
    add("--port", type=port, help="port to listen on (KYCFLOW_PORT, 8080)")
    add(
        "--workers",
        type=whole_number(1, 256),
        metavar="N",
        help="HTTP worker processes (KYCFLOW_WORKERS, one per CPU)",
    )
    serve.set_defaults(handler=_serve)


def _add_replay(commands: Any) -> None:
    replay = _command(
        commands,
        "replay",
        "rebuild the projections from the raw log",
        replaying.__doc__,
        environment.REPLAY,
    )
    _database_flag(replay)
    replay.add_argument(
        "--until",
        help="only webhooks received up to this ISO-8601 time "
        "(e.g. 2026-11-22T10:00:00Z): the state as of then",
    )
    replay.add_argument(
        "--to", type=database, metavar="PATH", help="write the rebuilt projections here instead"
    )
    replay.add_argument(
        "--from-kafka",
        action="store_true",
        help="re-fold the Kafka raw topic (KYCFLOW_KAFKA_BOOTSTRAP) into --to, a new file",
    )
    replay.set_defaults(handler=_replay)


def _add_inspect(commands: Any) -> None:
    inspect = _command(
        commands,
        "inspect",
        "explain why a verification is in its state",
        inspection.__doc__,
        environment.INSPECT,
    )
    inspect.usage = "%(prog)s [-h] [--db PATH] [--json] (PROVIDER KIND ID | --reference REF)"
    add = inspect.add_argument
    add("provider", nargs="?", choices=PROVIDERS, metavar="PROVIDER", help=", ".join(PROVIDERS))
    add("kind", nargs="?", metavar="KIND", help="kyc, kyb, kyb_document, aml_monitoring, …")
    add("id", nargs="?", metavar="ID", help="the provider's id of the subject")
    inspect.add_argument(
        "--reference",
        metavar="REF",
        type=reference,
        help="instead of PROVIDER KIND ID: every subject with this integrator id of yours",
    )
    _database_flag(inspect)
    inspect.add_argument("--json", action="store_true", help="machine-readable output")
    inspect.set_defaults(handler=_inspect)


def _inspect_usage(args: argparse.Namespace) -> str | None:
    """Why the command line names neither one subject nor one reference, if it does not."""
    subject = (args.provider, args.kind, args.id)
    if args.reference is None:
        return None if None not in subject else "inspect needs PROVIDER KIND ID, or --reference REF"
    return (
        None
        if subject == (None,) * 3
        else "inspect takes PROVIDER KIND ID or --reference, not both"
    )


def _add_normalise(commands: Any) -> None:
    show = _command(
        commands, "normalise", "show what kycflow makes of one webhook body", NORMALISE_HELP
    )
    show.add_argument("provider", choices=PROVIDERS)
    show.add_argument("body", help="file with the raw body, or - for standard input")
    show.add_argument("--event-type", help="iDenfy's Idenfy-Event-Type header value")
    show.set_defaults(handler=_normalise)


def _version() -> str:
    try:
        return metadata.version("kycflow")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="kycflow",
        description="KYC/KYB webhooks in, trustworthy verification status out.",
        epilog="kycflow COMMAND --help describes a command and the environment it reads.",
        formatter_class=HelpFormatter,
    )
    root.add_argument("--version", action="version", version=f"kycflow {_version()}")
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_serve(commands)
    _add_replay(commands)
    _add_inspect(commands)
    _add_normalise(commands)
    add_simulate(commands, functools.partial(_command, variables=environment.SIMULATE))
    add_kafka_commands(commands, _command)
    add_quarantine(commands, _command)
    add_erasure_commands(commands, _command)
    return root


def main(argv: list[str] | None = None) -> int:
    # Owner-only files: the databases (and SQLite's -wal/-shm, which take the database's
    # mode), replay output and the credentials hold personal data or secrets.
    os.umask(0o077)
    args = parser().parse_args(argv)
    try:
        code = int(args.handler(args))
        sys.stdout.flush()  # a reader that went away shows here, not at interpreter exit
        return code
    except BrokenPipeError:
        quiet_broken_pipe()
        return 1  # quietly, as rich does for what it prints (Console.on_broken_pipe)
    except KeyboardInterrupt:
        return 130
    except ConfigError as exc:
        console.print(f"[red]configuration error:[/] {exc}")
        return 2
    except KycflowError as exc:
        return _fail(str(exc))
    except masterkeys.MasterKeyError as exc:  # the raw log stays sealed: nothing is written
        return _fail(str(exc), 2)
    except (OSError, sqlite3.Error) as exc:  # the path, if any, is in the message
        return _fail(describe(exc))


if __name__ == "__main__":
    sys.exit(main())
