"""Encryption at rest: the master and data keys (ingest.sealing) and the sealed raw log."""

from __future__ import annotations

import base64
import os
import pickle
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ingest import appending, rawlog, sealing
from ingest.sealing import MasterKeyError, MasterKeys
from statemachines import normalise
from statemachines.normalise import reduced_form
from statemachines.routing import routing_key
from streams import masterkeys
from streams.simulator import samples

NAME = b"JOHN"  # a personal value every iDenfy sample body carries
DOCUMENT = b"AB123456"


def key_text() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def sample(scan_ref: str, client_id: str = "client-42") -> samples.RawEnvelope:
    return samples.deliver(samples.idenfy_identification(scan_ref=scan_ref, client_id=client_id))


def subject(env: samples.RawEnvelope) -> str:
    return routing_key(env).decode()


def file_bytes(raw_path: Path) -> bytes:
    return b"".join(
        path.read_bytes() for path in raw_path.parent.iterdir() if path.name.startswith("k.raw")
    )


def test_a_sealed_value_opens_only_with_its_key_and_its_row() -> None:
    key = AESGCM(sealing.new_data_key())
    aad = sealing.record_aad("idenfy", "idenfy:sha256:1")
    sealed = sealing.seal(key, b'{"a":"b"}', b"JOHN DOE", aad)
    assert NAME not in sealed
    assert sealing.unseal(key, sealed, aad) == (b'{"a":"b"}', b"JOHN DOE")
    with pytest.raises(InvalidTag):  # moved onto another row
        sealing.unseal(key, sealed, sealing.record_aad("idenfy", "idenfy:sha256:2"))
    with pytest.raises(InvalidTag):
        sealing.unseal(AESGCM(sealing.new_data_key()), sealed, aad)


def test_master_keys_parse_rotate_and_never_show_the_key() -> None:
    old, new = key_text(), key_text()
    wrapped_by_old = MasterKeys.parse(old, "test").wrap("a/b/c", b"k" * 32)
    both = MasterKeys.parse(f"{new}, {old}\n", "test")
    assert both.current == sealing.fingerprint(base64.b64decode(new))
    assert both.unwrap("a/b/c", *wrapped_by_old) == b"k" * 32  # the old key still opens
    assert both.wrap("a/b/c", b"k" * 32)[0] == both.current  # the new key wraps
    assert new not in repr(both) and old not in repr(both)
    assert pickle.loads(pickle.dumps(both)).unwrap("a/b/c", *wrapped_by_old) == b"k" * 32


@pytest.mark.parametrize("text", ["", "not base64!", base64.b64encode(b"short").decode()])
def test_a_malformed_master_key_is_refused_without_echoing_it(text: str) -> None:
    with pytest.raises(MasterKeyError) as refused:
        MasterKeys.parse(text, "KYCFLOW_MASTER_KEY")
    assert "KYCFLOW_MASTER_KEY" in str(refused.value)
    assert not text or text not in str(refused.value)


def test_a_data_key_does_not_open_under_another_subject() -> None:
    master = MasterKeys.parse(key_text(), "test")
    fingerprint, wrapped = master.wrap("idenfy/kyc/1", b"k" * 32)
    with pytest.raises(MasterKeyError):
        master.unwrap("idenfy/kyc/2", fingerprint, wrapped)


def test_the_writer_seals_each_subject_under_its_own_key(tmp_path: Path) -> None:
    master = MasterKeys.parse(key_text(), "test")
    path = tmp_path / "k.raw.db"
    first, second, again = sample("scan-1"), sample("scan-2"), sample("scan-1", "client-43")
    writer = appending.RawLogWriter(path, master)
    writer.append([first, second, again], [subject(first), subject(second), subject(again)])
    writer.close()

    conn = rawlog.connect(path, master=master)
    keys = conn.execute('SELECT key_id FROM raw_log ORDER BY "offset"').fetchall()
    assert keys[0] == keys[2] != keys[1]  # one data key per subject
    assert conn.execute("SELECT count(*) FROM data_keys").fetchone() == (2,)
    read = list(rawlog.iterate(conn))
    assert [(e.body, dict(e.headers)) for e in read] == [
        (e.body, dict(e.headers)) for e in (first, second, again)
    ]
    conn.close()
    rawlog.connect(path).execute("PRAGMA wal_checkpoint(TRUNCATE)")
    stored = file_bytes(path)
    assert NAME not in stored and DOCUMENT not in stored and b"idenfy-event-type" not in stored


def test_a_sealed_log_is_refused_without_its_master_key(tmp_path: Path) -> None:
    master = MasterKeys.parse(key_text(), "test")
    path = tmp_path / "k.raw.db"
    env = sample("scan-1")
    appending.RawLogWriter(path, master).append([env], [subject(env)])
    with pytest.raises(MasterKeyError, match="no master key"):
        list(rawlog.iterate(rawlog.connect(path, readonly=True)))
    other = MasterKeys.parse(key_text(), "test")
    with pytest.raises(MasterKeyError, match=master.current):
        rawlog.check_master(rawlog.connect(path, readonly=True), other)


def test_destroyed_keys_make_rows_read_as_erased_and_the_writer_makes_new_ones(
    tmp_path: Path,
) -> None:
    master = MasterKeys.parse(key_text(), "test")
    path = tmp_path / "k.raw.db"
    env = sample("scan-1")
    writer = appending.RawLogWriter(path, master)
    writer.append([env], [subject(env)])
    # What an erasure does to the keys, from another connection while the writer runs:
    other = rawlog.connect(path)
    other.execute("DELETE FROM data_keys WHERE subject = ?", (subject(env),))
    other.execute("UPDATE key_generation SET n = n + 1")
    later = sample("scan-1", "client-43")
    writer.append([later], [subject(later)])  # must not reuse the destroyed, cached key

    first, second = rawlog.iterate(rawlog.connect(path, readonly=True, master=master))
    assert first.reduced == "" and first.body == b""  # nothing readable, nothing kept
    assert second.body == later.body


def test_a_reduced_row_reads_as_the_event_it_had_become(tmp_path: Path) -> None:
    master = MasterKeys.parse(key_text(), "test")
    path = tmp_path / "k.raw.db"
    env = sample("scan-1")
    appending.RawLogWriter(path, master).append([env], [subject(env)])
    conn = rawlog.connect(path, master=master)
    (stored,) = rawlog.iterate(conn)
    conn.execute("INSERT INTO reduced VALUES (?, ?)", (stored.offset, reduced_form(stored)))
    conn.execute("DELETE FROM data_keys")
    conn.close()

    (reduced,) = rawlog.iterate(rawlog.connect(path, readonly=True, master=master))
    assert reduced.body == b"" and reduced.reduced
    assert normalise(reduced) == normalise(stored)._replace(reference=None, references=())


def test_serving_creates_the_first_run_key_once_and_refuses_a_lost_one(tmp_path: Path) -> None:
    db = str(tmp_path / "k.db")
    master, created = masterkeys.for_serving({}, db)
    assert created == tmp_path / "k.master.key" and master is not None
    assert created.stat().st_mode & 0o777 == 0o600
    env = sample("scan-1")
    appending.RawLogWriter(rawlog.raw_log_path(db), master).append([env], [subject(env)])
    assert masterkeys.for_serving({}, db)[1] is None  # never a second key
    created.unlink()
    with pytest.raises(MasterKeyError, match="does not exist"):
        masterkeys.for_serving({}, db)  # a fresh key would make every row unreadable
    with pytest.raises(MasterKeyError, match="not configured"):
        masterkeys.for_serving({sealing.MASTER_KEY: key_text()}, db)


def test_encryption_off_stores_new_rows_in_the_clear_but_reads_sealed_ones(
    tmp_path: Path,
) -> None:
    master = MasterKeys.parse(key_text(), "test")
    path = tmp_path / "k.raw.db"
    sealed, clear = sample("scan-1"), sample("scan-2")
    appending.RawLogWriter(path, master).append([sealed], [subject(sealed)])
    appending.RawLogWriter(path, None).append([clear], [subject(clear)])
    read = list(rawlog.iterate(rawlog.connect(path, readonly=True, master=master)))
    assert [e.body for e in read] == [sealed.body, clear.body]
    assert not sealing.encryption_enabled({sealing.ENCRYPTION: "off"})
    with pytest.raises(MasterKeyError):
        sealing.encryption_enabled({sealing.ENCRYPTION: "maybe"})
