"""Which master key a command uses, decided once at start-up, with one clear line if none fits.

`serve` needs a key that opens every data key the raw log already holds; on a log without
any (a first run, or a log from before encryption at rest) it creates the first-run key
file beside the database. Readers (`replay`, `inspect`, the console) need a key only when
the log holds sealed rows.
"""

from __future__ import annotations

import contextlib
import functools
import sqlite3
from collections.abc import Mapping
from pathlib import Path

from ingest import rawlog, sealing
from ingest.sealing import MasterKeyError, MasterKeys
from streams.kafka.config import KafkaSettings


def for_serving(config: Mapping[str, str], db_path: str) -> tuple[MasterKeys | None, Path | None]:
    """(master keys to seal and read with, the key file created on this first run).

    The keys are None only when encryption is switched off and the log holds no sealed
    rows. Raises MasterKeyError (one line, no secret) when no configured key fits.
    """
    kafka = KafkaSettings.from_config(config)
    if kafka is not None:
        return _for_serving_kafka(config, db_path, kafka)
    raw_path = rawlog.raw_log_path(db_path)
    if _holds_data_keys(raw_path):  # a key must open them: loading says which is missing
        master = sealing.load_master_keys(config, db_path)
        with contextlib.closing(rawlog.connect(raw_path, readonly=True)) as conn:
            rawlog.check_master(conn, master)
        return master, None
    created = None
    if sealing.encryption_enabled(config):
        created = sealing.ensure_master_key(config, db_path)
    return sealing.configured_master_keys(config, db_path), created


def _for_serving_kafka(
    config: Mapping[str, str], db_path: str, kafka: KafkaSettings
) -> tuple[MasterKeys | None, Path | None]:
    """Kafka mode: the data keys are in PREFIX.keys; the first-run key file is created only
    while that topic holds none (a fresh key over records sealed under another is loss)."""
    from streams.kafka.keys import check_master, master_from_env

    master = master_from_env(config, db_path)
    created = None
    if master is None and sealing.encryption_enabled(config):
        check_master(kafka, None)  # refuses when the topic already holds sealed records
        created = sealing.ensure_master_key(config, db_path)
        master = sealing.load_master_keys(config, db_path)
    elif master is not None:
        check_master(kafka, master)
    return master, created


def for_reading(config: Mapping[str, str], db_path: str) -> MasterKeys | None:
    """The master keys to open the log's sealed rows; None when it holds none."""
    if not _holds_data_keys(rawlog.raw_log_path(db_path)):
        return None
    master = sealing.load_master_keys(config, db_path)
    with contextlib.closing(rawlog.connect(rawlog.raw_log_path(db_path), readonly=True)) as conn:
        rawlog.check_master(conn, master)
    return master


def raw_reader(config: Mapping[str, str], db_path: str) -> rawlog.Reader:
    """Raw deliveries by offset as `inspect` and the console read them in each mode."""
    kafka = KafkaSettings.from_config(config)
    if kafka is not None:  # Kafka mode: the raw deliveries are in the raw topic
        from streams.kafka.keys import master_from_env
        from streams.kafka.replay import fetch_positions

        return functools.partial(fetch_positions, kafka, master=master_from_env(config, db_path))
    return rawlog.reader(db_path, for_reading(config, db_path))


def _holds_data_keys(raw_path: Path) -> bool:
    if not raw_path.exists():
        return False
    with contextlib.closing(rawlog.connect(raw_path, readonly=True)) as conn:
        try:
            return rawlog.holds_data_keys(conn)
        except sqlite3.OperationalError:  # from before encryption at rest: no data_keys
            return False


__all__ = ["MasterKeyError", "for_reading", "for_serving", "raw_reader"]
