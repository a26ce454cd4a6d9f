"""Reading sealed raw records in Kafka mode: the keys and reduced topics, and the master key.

Readers (the Faust worker, `replay --from-kafka`, `inspect`, the console, erasure) open raw
records with a `RecordOpener`: it reads `PREFIX.keys` to its end before the first record
and again whenever a record names a key id it does not hold; a key still missing then was
destroyed (once the record is older than the time a key can take to arrive:
`ingest.kafka_keys` says why that is sound), and the record reads as reduced,
with the event `PREFIX.reduced` kept for its position, read to its end in the same way.

Both topics are read whole and kept in memory: about 150 bytes per data key, and one
reduced event (a few hundred bytes) per delivery erased or past retention.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

import pydantic_core
from kafka import KafkaConsumer, TopicPartition

from ingest import sealing
from ingest.kafka_keys import KEY_HORIZON, Keyring, open_record, sealed_key
from ingest.sealing import MasterKeys
from statemachines.envelope import RawEnvelope
from streams.kafka.config import KafkaSettings


def master_from_env(config: Mapping[str, str], db_path: str | None = None) -> MasterKeys | None:
    """The master keys a Kafka-mode process was given (`sealing.configured_master_keys`):
    on another host than `serve` there is no first-run file, only the settings."""
    return sealing.configured_master_keys(config, db_path)


def _received(value: bytes) -> float:
    """A raw record's receive time (the ingest clock), as a Unix time; 0 if unreadable."""
    try:
        text = str(pydantic_core.from_json(value)["received_at"])
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except (ValueError, KeyError, TypeError):
        return 0.0


class TopicView:
    """Every partition of a compacted topic, read from its start, caught up on demand."""

    def __init__(
        self, settings: KafkaSettings, topic: str, apply: Callable[[bytes, bytes | None], None]
    ) -> None:
        self.apply = apply
        self.consumer = KafkaConsumer(
            bootstrap_servers=settings.servers,
            client_id="kycflow-keys",
            enable_auto_commit=False,
            fetch_max_wait_ms=20,
        )
        found = self.consumer.partitions_for_topic(topic) or ()
        self.partitions = [TopicPartition(topic, p) for p in sorted(found)]
        self.consumer.assign(self.partitions)
        if self.partitions:
            self.consumer.seek_to_beginning(*self.partitions)

    def catch_up(self, timeout: float = 30.0) -> None:
        """Apply every record up to the topic's end as of now."""
        if not self.partitions:
            return
        ends = self.consumer.end_offsets(self.partitions)
        deadline = time.monotonic() + timeout
        while any(self.consumer.position(tp) < end for tp, end in ends.items()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {self.partitions[0].topic} to its end")
            for messages in self.consumer.poll(timeout_ms=100).values():
                for message in messages:
                    self.apply(message.key, message.value)

    def close(self) -> None:
        self.consumer.close()


class RecordOpener:
    """Opens raw records as the fold reads them (see the module docstring)."""

    def __init__(
        self,
        settings: KafkaSettings,
        master: MasterKeys | None,
        find_master: Callable[[], MasterKeys | None] | None = None,
    ) -> None:
        self.settings = settings
        self.keyring = Keyring(master)
        # Without a master key, asked again when sealed records turn up: a worker started
        # before `serve` made its first-run key finds it then.
        self.find_master = find_master if master is None else None
        self.reduced: dict[int, str] = {}
        self.destroyed: set[str] = set()  # key ids found missing after a read to the end
        self._keys: TopicView | None = None
        self._reduced: TopicView | None = None

    def stale(self, records: Sequence[tuple[int, bytes]]) -> bool:
        """Whether opening these needs a read of the keys (or reduced) topic first."""
        if self._keys is None:
            return True
        return bool(self._unknown(records) - self.destroyed)

    def _unknown(self, records: Sequence[tuple[int, bytes]]) -> set[str]:
        ids = {sealed_key(value) for _, value in records}
        return {key_id for key_id in ids if key_id is not None and key_id not in self.keyring}

    def refresh(self, records: Sequence[tuple[int, bytes]] = ()) -> None:
        """Read the keys topic to its end; and the reduced topic, if a key is gone."""
        if self._keys is None:
            self._keys = TopicView(self.settings, self.settings.topic("keys"), self.keyring.apply)
        self._keys.catch_up()
        if self.keyring.master is None and self.find_master is not None and self.keyring.wrapped:
            self.keyring.master = self.find_master()
        self._await_young_keys(records)
        # Read after these records were: a key still unknown was destroyed (ingest.kafka_keys).
        destroyed = self._unknown(records)
        self.destroyed |= destroyed
        if destroyed or self._reduced is not None:
            if self._reduced is None:
                self._reduced = TopicView(
                    self.settings, self.settings.topic("reduced"), self._apply_reduced
                )
            self._reduced.catch_up()

    def _await_young_keys(self, records: Sequence[tuple[int, bytes]]) -> None:
        """Read the keys topic again while a missing key may still be on its way: its raw
        record is younger than KEY_HORIZON (ingest sends both at once)."""
        assert self._keys is not None
        missing = self._unknown(records) - self.keyring.tombstoned
        if not missing:
            return
        youngest = max(_received(v) for _, v in records if sealed_key(v) in missing)
        # (A receive time ahead of this clock waits no longer than a current one.)
        until = min(youngest, time.time()) + KEY_HORIZON
        while missing and time.time() < until:
            time.sleep(0.02)
            self._keys.catch_up()
            missing = self._unknown(records) - self.keyring.tombstoned

    def _apply_reduced(self, key: bytes, value: bytes | None) -> None:
        if value is not None:
            self.reduced[int(key)] = str(json.loads(value)["event"])

    def open(self, records: Sequence[tuple[int, bytes]]) -> list[RawEnvelope]:
        """(position, raw value) pairs as envelopes, reading the topics first if needed."""
        if self.stale(records):
            self.refresh(records)
        return [open_record(value, pos, self.keyring, self.reduced) for pos, value in records]

    def check_master(self) -> None:
        """MasterKeyError (one line) unless the configured master keys open the log's keys."""
        self.refresh()
        self.keyring.check()

    def close(self) -> None:
        for view in (self._keys, self._reduced):
            if view is not None:
                view.close()


def check_master(settings: KafkaSettings, master: MasterKeys | None) -> None:
    """For a Kafka-mode process at start-up: refuse, in one line, a missing or wrong key."""
    opener = RecordOpener(settings, master)
    try:
        opener.check_master()
    finally:
        opener.close()
