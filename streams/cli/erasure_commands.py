"""`kycflow erase`, `retention`, `keys rotate` and `audit` (docs/personal-data.md).

Each works in either mode: embedded (`streams.erasure.embedded`, one transaction on the
raw log; with no service running it also folds the erasure into the projections) or Kafka
mode (`streams.erasure.kafka`) when KYCFLOW_KAFKA_BOOTSTRAP is set. A subject nobody knows
is one line and exit status 1; a missing or wrong master key one line and status 2; a bad
Kafka setting one line and status 2. In Kafka mode a broker that does not answer is named
before anything is done, and one that fails midway is one line saying the work was not
completed and that running the same command again completes it (status 1).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from collections.abc import Callable
from typing import Any

from rich.console import Console

from ingest import rawlog, sealing
from projections.locking import tidy
from statemachines.envelope import PROVIDERS
from streams import masterkeys
from streams.cli import environment
from streams.cli.arguments import database, positive, reference
from streams.cli.failures import database_problem, quiet
from streams.config import ConfigError, db_path, load_config
from streams.erasure import Erased, Request, UnknownSubject, audit, embedded, retention
from streams.kafka.config import KafkaSettings

console = Console(stderr=True, soft_wrap=True, highlight=False)
NOT_YET = "Kafka mode: {what} is not supported yet (streams.erasure.kafka is missing)"

ERASE_HELP = """Erase a subject's personal data everywhere kycflow keeps it: its raw
deliveries are reduced to the events they became, its data keys destroyed, and an erasure
record appended that marks it erased in the projections. The decision trail (status,
final, decided_by, times, transitions) stays unless --all. Works while the service runs;
an unknown subject exits 1."""
RETENTION_HELP = """Apply the retention policy (KYCFLOW_RETENTION: final+30d, last+90d,
off) now: the raw bodies of due subjects are reduced to their events, references kept.
The running service also applies it every KYCFLOW_RETENTION_INTERVAL seconds."""
ROTATE_HELP = """Rewrap every data key under the first master key of KYCFLOW_MASTER_KEY
(NEW,OLD). Afterwards the old key can be dropped from the configuration."""
AUDIT_HELP = """Print the audit trail of erasures, retention runs and key rotations, oldest
first: when, what, by whom (cli, api:<token fingerprint>, retention), which subject keys,
how many deliveries were reduced and data keys destroyed. No personal data. Read-only:
works while the service runs (embedded mode: the audit table of the raw log; Kafka mode:
the PREFIX.audit topic, read to its end)."""
AUDIT_ENVIRONMENT = {**environment.DATABASE, **environment.TAIL}  # no master key needed
EMPTY_TRAIL = "the audit trail is empty: no erasure, retention run or key rotation yet"


def _fail(message: str, code: int = 1) -> int:
    console.print(f"[red]kycflow:[/] {message}", markup=True)
    return code


def _context(args: argparse.Namespace) -> tuple[str, dict[str, str], KafkaSettings | None]:
    env = dict(os.environ)
    if getattr(args, "db", None):
        env["KYCFLOW_DB"] = args.db
    database_path = db_path(env)
    config = load_config(env, database_path)
    try:
        kafka = KafkaSettings.from_config(config)
    except ValueError as exc:  # one line, as the other Kafka commands say it
        raise ConfigError(str(exc)) from None
    return database_path, config, kafka


def _require_broker(kafka: KafkaSettings | None) -> None:
    """In Kafka mode, a broker that does not answer is named before anything is done."""
    if kafka is not None:
        from streams.cli.kafka_commands import require_broker

        require_broker(kafka)


def _erase(args: argparse.Namespace) -> int:
    if (usage := _usage(args)) is not None:
        return _fail(usage, 2)
    database_path, config, kafka = _context(args)
    if (problem := database_problem(database_path, create=False)) is not None:
        return _fail(problem)
    if args.reference is not None:
        subjects = embedded.subjects_with_reference(database_path, args.reference)
        if not subjects:
            return _fail(f"no subject with reference {args.reference!r}")
    else:
        subjects = (f"{args.provider}/{args.kind}/{args.id}",)
    request = Request(
        subjects, scope="all" if args.all else "personal", keep_reference=args.keep_reference
    )
    erase = _eraser(database_path, config, kafka)
    if erase is None:
        return _fail(NOT_YET.format(what="erasure"), 2)
    _require_broker(kafka)
    try:
        with quiet("kafka"):
            done = erase(request)
    except UnknownSubject as exc:
        return _fail(f"no such subject: {exc.args[0]} (nothing was erased)")
    finally:
        _tidy(database_path, kafka)
    _report_erased(done, args.json)
    return 0


def _eraser(
    database_path: str, config: dict[str, str], kafka: KafkaSettings | None
) -> Callable[[Request], list[Erased]] | None:
    if kafka is None:
        master = masterkeys.for_reading(config, database_path)
        return lambda request: embedded.erase(request, db_path=database_path, master=master)
    try:
        from streams.erasure import kafka as in_kafka
    except ImportError:
        return None
    master = _kafka_master(config, database_path)
    return lambda request: in_kafka.erase(
        request, settings=kafka, master=master, db_path=database_path
    )


def _kafka_master(config: dict[str, str], database_path: str) -> sealing.MasterKeys | None:
    """Kafka mode keeps no data keys beside the database: the configured key, if any."""
    try:
        return sealing.load_master_keys(config, database_path)
    except sealing.MasterKeyError:
        if sealing.encryption_enabled(config):
            raise
        return None


def _report_erased(done: list[Erased], as_json: bool) -> None:
    if as_json:
        print(json.dumps([dataclasses.asdict(one) for one in done], indent=2))
        return
    for one in done:
        print(
            f"erased {one.subject} at {one.erased_at}: {one.deliveries} deliveries reduced, "
            f"{one.dropped} quarantined dropped, {one.keys} data keys destroyed"
        )


def _usage(args: argparse.Namespace) -> str | None:
    subject = (args.provider, args.kind, args.id)
    if args.reference is None:
        return None if None not in subject else "erase needs PROVIDER KIND ID, or --reference REF"
    return (
        None if subject == (None,) * 3 else "erase takes PROVIDER KIND ID or --reference, not both"
    )


def _retention(args: argparse.Namespace) -> int:
    database_path, config, kafka = _context(args)
    try:
        policy, _ = retention.from_config(config)
    except ValueError as exc:
        console.print(f"[red]configuration error:[/] {exc}")
        return 2
    if policy is None:
        return _fail(f"no retention policy: set {retention.RETENTION} (e.g. final+30d)", 2)
    if (problem := database_problem(database_path, create=False)) is not None:
        return _fail(problem)
    _require_broker(kafka)
    try:
        with quiet("kafka"):
            report = _run_retention(policy, database_path, config, kafka, args.dry_run)
    finally:
        _tidy(database_path, kafka)
    if report is None:
        return _fail(NOT_YET.format(what="retention"), 2)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        verb = "would reduce" if args.dry_run else "reduced"
        print(
            f"retention {policy}: {verb} {report['deliveries']} deliveries of "
            f"{report['subjects']} subjects ({report['keys']} data keys)"
        )
    return 0


def _run_retention(
    policy: retention.Policy,
    database_path: str,
    config: dict[str, str],
    kafka: KafkaSettings | None,
    dry_run: bool,
) -> dict[str, Any] | None:
    if kafka is None:
        master = masterkeys.for_reading(config, database_path)
        return retention.run(policy, db_path=database_path, master=master, dry_run=dry_run)
    try:
        from streams.erasure import kafka_retention
    except ImportError:
        return None
    report: dict[str, Any] = kafka_retention.retention(
        policy,
        settings=kafka,
        master=_kafka_master(config, database_path),
        db_path=database_path,
        dry_run=dry_run,
    )
    return {"policy": str(policy), **report}


def _rotate(args: argparse.Namespace) -> int:
    database_path, config, kafka = _context(args)
    if kafka is not None:
        return _fail("Kafka mode: keys rotate is not supported yet", 2)
    if (problem := database_problem(database_path, create=False)) is not None:
        return _fail(problem)
    master = sealing.load_master_keys(config, database_path)
    raw_path = rawlog.raw_log_path(database_path)
    if raw_path.exists():
        masterkeys.for_reading(config, database_path)  # every data key opens: or one line
    try:
        rewrapped, total = embedded.rotate(database_path, master) if raw_path.exists() else (0, 0)
    finally:
        _tidy(database_path, kafka)
    if args.json:
        print(json.dumps({"rewrapped": rewrapped, "keys": total, "master": master.current}))
    else:
        print(f"rewrapped {rewrapped} of {total} data keys under master key {master.current}")
    return 0


def _audit(args: argparse.Namespace) -> int:
    database_path, _, kafka = _context(args)
    if kafka is None:
        if (problem := database_problem(database_path, create=False)) is not None:
            return _fail(problem)
        raw_path = rawlog.raw_log_path(database_path)
        try:  # read-only readers cannot remove the -wal/-shm they found or made: tidy after
            entries = audit.from_raw_log(raw_path)
        finally:
            tidy(raw_path)
    else:
        entries = _audit_topic(kafka)
    _report_trail(entries[-args.limit :] if args.limit else entries, args.json)
    return 0


def _report_trail(entries: list[audit.Entry], as_json: bool) -> None:
    """Oldest first, so the newest is the last line a terminal shows."""
    if as_json:
        print(json.dumps([entry.as_json() for entry in entries], indent=2))
        return
    if not entries:
        print(EMPTY_TRAIL)
    for entry in entries:
        subjects = ", ".join(entry.subjects) or "-"
        print(
            f"{entry.at}  {entry.action:<9} {entry.by:<16} {entry.deliveries:>6} deliveries "
            f"{entry.keys:>6} keys  {subjects}"
        )


def _audit_topic(kafka: KafkaSettings) -> list[audit.Entry]:
    from streams.cli.kafka_commands import broker_errors, require_broker

    require_broker(kafka)
    with broker_errors(kafka):
        return audit.from_topic(kafka)


def _tidy(database_path: str, kafka: KafkaSettings | None) -> None:
    tidy(database_path)
    if kafka is None:
        tidy(rawlog.raw_log_path(database_path))


def add_erasure_commands(commands: Any, command: Any) -> None:
    """Register erase, retention, keys and audit on the CLI's subparsers (`command` builds
    one)."""
    erase = command(
        commands, "erase", "erase a subject's personal data", ERASE_HELP, environment.ERASE
    )
    erase.usage = (
        "%(prog)s [-h] [--db PATH] [--all] [--keep-reference] [--json] "
        "(PROVIDER KIND ID | --reference REF)"
    )
    add = erase.add_argument
    add("provider", nargs="?", choices=PROVIDERS, metavar="PROVIDER", help=", ".join(PROVIDERS))
    add("kind", nargs="?", metavar="KIND", help="kyc, kyb, kyb_document, aml_monitoring, …")
    add("id", nargs="?", metavar="ID", help="the provider's id of the subject")
    add("--reference", metavar="REF", type=reference, help="every subject with this reference")
    add("--all", action="store_true", help="erase the decision trail too")
    add("--keep-reference", action="store_true", help="keep the integrator's reference")
    _common(erase, _erase)
    keep = command(
        commands,
        "retention",
        "apply the retention policy now",
        RETENTION_HELP,
        environment.RETENTION_COMMAND,
    )
    keep.add_argument("--dry-run", action="store_true", help="only count what is due")
    _common(keep, _retention)
    keys = command(commands, "keys", "manage the data keys", None, environment.KEYS)
    actions = keys.add_subparsers(dest="action", required=True, metavar="ACTION")
    rotate = command(actions, "rotate", "rewrap every data key", ROTATE_HELP, environment.KEYS)
    _common(rotate, _rotate)
    trail = command(
        commands,
        "audit",
        "print the audit trail of erasures and retention",
        AUDIT_HELP,
        AUDIT_ENVIRONMENT,
    )
    trail.add_argument("--limit", type=positive, metavar="N", help="only the newest N entries")
    _common(trail, _audit)


def _common(parser: argparse.ArgumentParser, handler: Callable[[argparse.Namespace], int]) -> None:
    parser.add_argument(
        "--db", type=database, metavar="PATH", help="the projections database (KYCFLOW_DB)"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(handler=handler)
