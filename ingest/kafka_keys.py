"""Kafka mode's encryption at rest: data keys in the compacted `PREFIX.keys` topic.

Each HTTP worker seals a raw record's body and kept headers (`ingest.sealing`) under a data
key of its own for the record's subject (the routing key), created on first use. A key
record is keyed `subject NUL key_id` (key ids are random per worker and subject, so workers
never contend) and holds the key wrapped by the master key; erasure tombstones every key id
of the subject, and compaction then forgets them.

What readers rely on: a key record is sent together with the first raw record sealed under
it, and the webhook is answered only once both were acknowledged. The two land on different
partitions, so a reader may see the raw record a moment before its key: a key id missing
from `PREFIX.keys` read to its end is waited for while the record is younger than
`KEY_HORIZON` (by its `received_at`, the ingest clock); past that, it was destroyed — or
never written, the webhook having been refused with a 503 — and the record reads as
reduced: the event kept in `PREFIX.reduced` (keyed by the record's position), or nothing.
(Producing the key first and the record after its acknowledgement avoids the wait but
costs every first delivery of a subject a second round trip: measured 0.83 of the
unsealed ingest rate, against the 0.9 wanted.)

A sealed raw record is the ordinary envelope JSON with the sealed bytes as its body, no
headers, and one more field, `"sealed":{"key":KEY_ID}`, appended last; readers that find no
such field read the record as before (records written in the clear).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Mapping
from dataclasses import replace

import pydantic_core
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ingest import sealing
from ingest.sealing import MasterKeyError, MasterKeys
from statemachines.envelope import RawEnvelope, envelope_from_record, envelope_to_json

_SEALED = b',"sealed":{"key":"'  # JSON strings escape '"', so only our field can match
_CACHE = 50_000  # unwrapped keys kept per reader (the wrapped ones are all kept)
# A key record missing for a raw record this much younger than now may still be on its way:
# ingest gives up on a request after its produce timeout, and its producer stops (sending
# what it held) within as long again; the rest is room for clocks that disagree.
KEY_HORIZON = 60.0
# Seconds an HTTP worker seals a subject's deliveries under one data key after making it
# (`ingest.kafka_log`). Erasure waits this long (and a produce timeout, and a margin for
# clocks) past a key's `created` before destroying it (`streams.erasure.kafka`).
KEY_REUSE = 5.0


def key_record_key(subject: str, key_id: str) -> bytes:
    return f"{subject}\x00{key_id}".encode("utf-8", "surrogatepass")


def key_record(
    subject: str, key_id: str, master: str, wrapped: bytes, created: float
) -> tuple[bytes, bytes]:
    """The keys topic's (key, value) for one data key made at `created` (Unix time, the
    ingest host's clock): erasure waits until no worker can still seal under it."""
    value = {
        "subject": subject,
        "master": master,
        "wrapped": base64.b64encode(wrapped).decode(),
        "created": round(created, 3),
    }
    return key_record_key(subject, key_id), json.dumps(value).encode()


def sealed_value(env: RawEnvelope, key_id: str, data_key: AESGCM) -> bytes:
    """The raw topic's value for `env`, its body and headers sealed under `data_key`."""
    headers = json.dumps(dict(env.headers), separators=(",", ":")).encode()
    aad = sealing.record_aad(env.provider, env.dedup_key)
    sealed = sealing.seal(data_key, headers, env.body, aad)
    plain = envelope_to_json(replace(env, body=sealed, headers={}))
    # The envelope JSON ends with "}": add our field before it (one serialisation, not two).
    return plain[:-1] + _SEALED + key_id.encode("ascii") + b'"}}'


def sealed_key(value: bytes) -> str | None:
    """The key id a raw record is sealed under; None for a record in the clear."""
    start = value.rfind(_SEALED)
    if start < 0:
        return None
    start += len(_SEALED)
    return value[start : value.index(b'"', start)].decode("ascii", "replace")


def reduced_record(pos: int, event: str) -> tuple[bytes, bytes]:
    """The reduced topic's (key, value): the event a delivery had become, "" for none."""
    return str(pos).encode(), json.dumps({"event": event}).encode()


class Keyring:
    """The data keys a reader knows, fed with key records (tombstones remove them)."""

    def __init__(self, master: MasterKeys | None) -> None:
        self.master = master
        self.wrapped: dict[str, tuple[str, str, bytes]] = {}  # key id -> (subject, master, key)
        self.subjects: dict[str, set[str]] = {}  # subject -> its key ids
        self.unwrapped: dict[str, AESGCM] = {}
        self.tombstoned: set[str] = set()  # destroyed, as seen (until compaction drops them)
        self.created: dict[str, float] = {}  # key id -> when a worker made it (Unix time)

    def apply(self, key: bytes, value: bytes | None) -> None:
        subject, _, key_id = key.decode("utf-8", "surrogatepass").rpartition("\x00")
        if value is None:  # a tombstone: the key is destroyed
            self.tombstoned.add(key_id)
            self.wrapped.pop(key_id, None)
            self.unwrapped.pop(key_id, None)
            self.subjects.get(subject, set()).discard(key_id)
            self.created.pop(key_id, None)
            return
        data = json.loads(value)
        wrapped = base64.b64decode(data["wrapped"])
        self.wrapped[key_id] = (str(data["subject"]), str(data["master"]), wrapped)
        self.subjects.setdefault(subject, set()).add(key_id)
        # A record without the field (written before it existed) counts as made when first
        # seen: erasure then waits the longest, never too little.
        self.created[key_id] = float(data.get("created") or time.time())

    def __contains__(self, key_id: object) -> bool:
        return key_id in self.wrapped

    def key_ids(self, subject: str) -> set[str]:
        return set(self.subjects.get(subject, ()))

    def data_key(self, key_id: str) -> AESGCM | None:
        """The unwrapped key; None when it is destroyed (or not read yet)."""
        found = self.unwrapped.get(key_id)
        if found is not None:
            return found
        entry = self.wrapped.get(key_id)
        if entry is None:
            return None
        subject, master, wrapped = entry
        if self.master is None:
            raise MasterKeyError(
                "the Kafka raw log is encrypted and no master key is configured "
                f"(set {sealing.MASTER_KEY} or {sealing.MASTER_KEY_FILE})"
            )
        if len(self.unwrapped) >= _CACHE:
            self.unwrapped.clear()
        found = self.unwrapped[key_id] = AESGCM(self.master.unwrap(subject, master, wrapped))
        return found

    def check(self) -> None:
        """MasterKeyError, naming fingerprints, unless the master keys open these keys."""
        masters = {master for _, master, _ in self.wrapped.values()}
        if masters and self.master is None:
            raise MasterKeyError(
                f"the Kafka raw log is encrypted under master key {', '.join(sorted(masters))} "
                f"and none is configured; set {sealing.MASTER_KEY} or {sealing.MASTER_KEY_FILE}"
            )
        for key_id in {next(k for k, e in self.wrapped.items() if e[1] == m) for m in masters}:
            self.data_key(key_id)  # one per master: unwraps, or names the missing key


def open_record(
    value: bytes, pos: int, keyring: Keyring, reduced: Mapping[int, str]
) -> RawEnvelope:
    """A raw record as the fold reads it: opened while its key exists, else reduced."""
    env = envelope_from_record(value, pos)
    key_id = sealed_key(value)
    if key_id is None:
        return env
    data_key = keyring.data_key(key_id)
    if data_key is None:  # destroyed: the event kept for it, or nothing
        return replace(env, body=b"", headers={}, reduced=reduced.get(pos, ""))
    try:
        headers, body = sealing.unseal(
            data_key, env.body, sealing.record_aad(env.provider, env.dedup_key)
        )
    except (InvalidTag, ValueError):
        raise MasterKeyError(f"raw record at position {pos} does not open with its key") from None
    return replace(env, body=body, headers=pydantic_core.from_json(headers))
