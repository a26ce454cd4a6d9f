"""The Kafka-mode commands: `worker`, `project`, `tail`, `topics`, `replay --from-kafka`.

`tail` and `topics` first check that a broker answers, within BROKER_TIMEOUT seconds:
kafka-python would otherwise wait 30 s to bootstrap and end in a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
from collections.abc import Iterator, Mapping
from typing import Any

from rich.console import Console

from streams.cli import environment
from streams.cli.arguments import database, positive, seconds
from streams.cli.failures import quiet
from streams.config import KycflowError, db_path, load_config
from streams.kafka.config import (
    KafkaSettings,
    ensure_topics,
    partitions_on_broker,
    topic_configs,
    topic_partitions,
)

console = Console(stderr=True, soft_wrap=True, highlight=False)
NEEDS_KAFKA = "set KYCFLOW_KAFKA_BOOTSTRAP (host:port of a Kafka broker) to use this command"
BROKER_TIMEOUT = 5.0  # a live broker answers in milliseconds; this bounds a dead one


def kafka_settings(env: Mapping[str, str] = os.environ) -> KafkaSettings | None:
    """The Kafka settings from the environment; None (after saying why) when unusable."""
    try:
        settings = KafkaSettings.from_config(load_config(env))
    except ValueError as exc:
        console.print(f"[red]configuration error:[/] {exc}")
        return None
    if settings is None:
        console.print(f"[red]{NEEDS_KAFKA}[/]")
    return settings


def require_broker(settings: KafkaSettings, timeout: float = BROKER_TIMEOUT) -> None:
    """KycflowError naming the address unless a broker answers within `timeout` seconds."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    with quiet("kafka"):  # its retry warnings would bury the one line that matters
        try:
            KafkaAdminClient(
                bootstrap_servers=settings.servers,
                client_id="kycflow-probe",
                bootstrap_timeout_ms=int(timeout * 1000),
                request_timeout_ms=int(timeout * 1000),
            ).close()
        except (KafkaError, OSError, ValueError) as exc:
            raise KycflowError(
                f"no Kafka broker answered at {settings.bootstrap} within {timeout:g} s "
                f"(KYCFLOW_KAFKA_BOOTSTRAP): {type(exc).__name__}"
            ) from None


@contextlib.contextmanager
def broker_errors(settings: KafkaSettings) -> Iterator[None]:
    """A Kafka failure after the broker first answered, as one line naming it (a read that
    gave up waiting is a TimeoutError)."""
    from kafka.errors import KafkaError

    try:
        yield
    except (KafkaError, TimeoutError) as exc:
        raise KycflowError(f"Kafka at {settings.bootstrap}: {exc}") from None


def _worker(args: argparse.Namespace) -> int:
    from streams.kafka.keys import master_from_env
    from streams.kafka.worker import run_worker

    settings = kafka_settings()
    if settings is None:
        return 2
    config = load_config(os.environ)
    master = master_from_env(config, db_path(config))
    return run_worker(settings, loglevel=args.loglevel, master=master)


def _project(args: argparse.Namespace) -> int:
    from streams.kafka.project import run_projector

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    env = {**os.environ, **({"KYCFLOW_DB": args.db} if args.db else {})}
    settings = kafka_settings(env)
    if settings is None:
        return 2
    applied = run_projector(settings, db_path(env))
    console.print(f"projector stopped after {applied:,} records")
    return 0


def _tail(args: argparse.Namespace) -> int:
    from streams.kafka.tail import line, tail

    settings = kafka_settings()
    if settings is None:
        return 2
    require_broker(settings)

    def show(record: dict[str, Any]) -> None:
        print(json.dumps(record) if args.json else line(record), flush=True)

    with contextlib.suppress(KeyboardInterrupt), broker_errors(settings):
        tail(
            settings,
            show,
            from_beginning=args.from_beginning,
            limit=args.limit,
            idle_timeout=args.idle_timeout,
        )
    return 0


def _topics(args: argparse.Namespace) -> int:
    settings = kafka_settings()
    if settings is None:
        return 2
    require_broker(settings)
    with broker_errors(settings):
        created = ensure_topics(settings)
        partitions = {**topic_partitions(settings), **partitions_on_broker(settings)}
    for name, configs in topic_configs(settings).items():
        state = "created" if name in created else "exists"
        settings_text = ", ".join(f"{k}={v}" for k, v in configs.items())
        count = f"{partitions[name]} partition{'' if partitions[name] == 1 else 's'}"
        console.print(f"{name:<24} {state:<8} {count}, {settings_text}")
    return 0


WORKER_HELP = """Run a Faust worker of the app KYCFLOW_KAFKA_GROUP: it folds kycflow.raw with
the core (the same step as embedded mode) and publishes kycflow.status, .transitions,
.annotations and .quarantine. Start several to share the raw topic's partitions."""
PROJECT_HELP = """Consume kycflow's output topics into the SQLite projections at KYCFLOW_DB,
which kycflow serve (Kafka mode) serves. Run exactly one per database."""
TAIL_HELP = """Print status changes as they happen, as a downstream subscriber of
kycflow.status would see them (newest version per subject; repeats skipped)."""
TOPICS_HELP = """Create kycflow's topics if missing (serve, worker and project also do it on
start), and print them with their partitions (as the broker reports them) and configs."""


def add_kafka_commands(commands: Any, command: Any) -> None:
    """Register the Kafka-mode commands on the CLI's subparsers (`command` builds one)."""
    worker = command(
        commands,
        "worker",
        "run a Faust worker: kycflow.raw -> status, transitions",
        WORKER_HELP,
        environment.WORKER,
    )
    worker.add_argument("--loglevel", default="info", choices=["debug", "info", "warning"])
    worker.set_defaults(handler=_worker)
    project = command(
        commands,
        "project",
        "project the output topics into KYCFLOW_DB (Kafka mode)",
        PROJECT_HELP,
        environment.PROJECT,
    )
    project.add_argument(
        "--db", type=database, metavar="PATH", help="the projections database (KYCFLOW_DB)"
    )
    project.set_defaults(handler=_project)
    tail = command(
        commands, "tail", "print status changes from kycflow.status", TAIL_HELP, environment.TAIL
    )
    tail.add_argument("--from-beginning", action="store_true", help="every subject's status")
    tail.add_argument("--json", action="store_true", help="one JSON record per line")
    tail.add_argument(
        "--limit", type=positive, metavar="N", help="stop after this many status changes"
    )
    tail.add_argument(
        "--idle-timeout", type=seconds, metavar="SECONDS", help="stop after this long quiet"
    )
    tail.set_defaults(handler=_tail)
    topics = command(
        commands,
        "topics",
        "create and list kycflow's Kafka topics",
        TOPICS_HELP,
        environment.TOPICS,
    )
    topics.set_defaults(handler=_topics)
