"""Retention in Kafka mode: erasure's steps 1-3 (`streams.erasure.kafka`) for the subjects a
policy finds due — references kept, no erasure record: the subject is not erased, its old
bodies are. `retention_loop` applies the policy continuously, from the projector, which
owns the projections that say who is due; `kycflow retention` runs it once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from ingest.sealing import MasterKeys
from streams.erasure import audit
from streams.erasure.embedded import facts_of
from streams.erasure.kafka import session_of
from streams.kafka.config import KafkaSettings

log = logging.getLogger("kycflow.erasure")


class DuePolicy(Protocol):
    """What retention needs of a policy (streams.erasure.retention)."""

    def due_subjects(self, db_path: str) -> Sequence[str]: ...


class Stop(Protocol):
    def is_set(self) -> bool: ...


def retention(
    policy: DuePolicy | None,
    *,
    settings: KafkaSettings,
    master: MasterKeys | None,
    db_path: str,
    dry_run: bool,
    due: Sequence[str] | None = None,
    by: str = "retention",
) -> dict[str, Any]:
    """Reduce and shred the subjects `due` (else those `policy.due_subjects(db_path)` names),
    keeping their references and not marking them erased, and audit it; with `dry_run`,
    only count."""
    subjects = list(due if due is not None else policy.due_subjects(db_path) if policy else ())
    counts = {"subjects": 0, "deliveries": 0, "keys": 0, "dry_run": dry_run}
    if not subjects:
        return counts
    with session_of(settings, master, "retention run") as session:
        plans = []
        for subject in subjects:
            made = session.plan(facts_of(db_path, subject), db_path, quarantine=False)
            if made.deliveries or made.keys:  # else nothing of it left to reduce
                plans.append(made)
        counts["subjects"] = len(plans)
        counts["deliveries"] = sum(len(made.deliveries) for made in plans)
        counts["keys"] = sum(made.keys for made in plans)
        if plans and not dry_run:
            session.topics()  # the audit topic, before anything is done
            for made in plans:
                session.reduce(made.deliveries, [], keep_reference=True)
            session.settle(plans)
            for made in plans:
                session.reduce(session.catch_up(made)[0], [], keep_reference=True)
                session.shred(made)
            subjects = [made.subject for made in plans]
            session.audit("retention", by, subjects, counts["deliveries"], counts["keys"])
    return counts


def retention_loop(
    policy: DuePolicy,
    settings: KafkaSettings,
    master: MasterKeys | None,
    db_path: str,
    interval: float,
    stop: Stop,
    reduced: Callable[[int], None] | None = None,
) -> None:
    """Apply the policy now and every `interval` seconds until `stop` is set; a failed run
    is logged and retried at the next, as is an audit entry that could not be written."""
    unaudited: list[audit.Entry] = []
    while not stop.is_set():
        try:
            audit.produce_pending(settings, unaudited)  # earlier runs' entries first
            report = retention(
                policy, settings=settings, master=master, db_path=db_path, dry_run=False
            )
        except audit.AuditFailed as exc:  # the run's work is done: its entry waits
            if exc.entry not in unaudited:
                unaudited.append(exc.entry)
            log.error("retention run failed: %s", exc)
        except Exception as exc:  # the broker may be away: the next run retries
            log.error("retention run failed: %s: %s", type(exc).__name__, exc)
        else:
            if report["deliveries"]:
                log.info(
                    "retention %s reduced %d deliveries of %d subjects",
                    policy, report["deliveries"], report["subjects"],
                )  # fmt: skip
                if reduced is not None:
                    reduced(report["deliveries"])
        deadline = time.monotonic() + interval
        while time.monotonic() < deadline and not stop.is_set():
            time.sleep(min(0.5, interval))


class _Stopping:
    def __init__(self, stopping: Callable[[], bool]) -> None:
        self.is_set = stopping


def start_retention(
    settings: KafkaSettings,
    db_path: str,
    stopping: Callable[[], bool],
    config: Mapping[str, str] | None = None,
) -> threading.Thread | None:
    """`retention_loop` in a daemon thread, as KYCFLOW_RETENTION and _INTERVAL say (None
    when there is no policy); for `kycflow project`, the one process per projections
    database. ConfigError names a malformed setting; MasterKeyError a missing key."""
    import os

    from streams.config import ConfigError, load_config
    from streams.erasure.retention import from_config
    from streams.kafka.keys import master_from_env

    config = load_config(os.environ, db_path) if config is None else config
    try:
        policy, interval = from_config(config)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if policy is None:
        return None
    master = master_from_env(config, db_path)
    thread = threading.Thread(
        target=retention_loop,
        args=(policy, settings, master, db_path, interval, _Stopping(stopping)),
        name="retention",
        daemon=True,
    )
    thread.start()
    log.info("retention %s every %g s", policy, interval)
    return thread
