"""Encryption at rest of raw webhooks: per-subject data keys under the operator's master key.

Every raw record's personal part (body and kept headers) is sealed with AES-GCM under a
*data key* that belongs to the record's subject (its routing key: `provider/kind/id`, or the
dedup key of a delivery no subject claims). Data keys are stored wrapped — AES-GCM under the
*master key* the operator holds — beside the log. Erasing a subject destroys its data keys:
the sealed records stay where they are (a Kafka topic cannot delete one record) and become
noise to whoever holds the log, the master key, or both ("crypto-shredding").

Signatures were checked over the exact bytes received before anything here runs; sealing
only changes how those bytes are kept. The associated data binds a sealed record to its
row (provider and dedup key), so a ciphertext moved onto another row does not open.

Master keys are named by a fingerprint (a hash, which tells nothing of the key), so the
store can say which master key wraps each data key and a wrong key is refused by name
instead of producing garbage. Rotation: configure the new key first and the old ones after
it; new data keys are wrapped by the first, `kycflow keys rotate` rewraps the old ones.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import struct
from collections.abc import Mapping
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MASTER_KEY = "KYCFLOW_MASTER_KEY"
MASTER_KEY_FILE = "KYCFLOW_MASTER_KEY_FILE"
ENCRYPTION = "KYCFLOW_ENCRYPTION"

FORMAT = b"\x01"  # first byte of a sealed value: the layout below, version 1
_NONCE = 12
_HEADERS_LEN = struct.Struct(">I")
_WRAP_CONTEXT = b"kycflow data key\x00"


class MasterKeyError(Exception):
    """A master key is missing, malformed or does not open the stored data keys."""


class Shredded(Exception):
    """The record's data key is gone: its subject was erased or its retention ran out."""


def fingerprint(key: bytes) -> str:
    """A master key's public name: 16 hex digits of a hash, never the key."""
    return hashlib.sha256(b"kycflow master key\x00" + key).hexdigest()[:16]


def new_master_key() -> str:
    """A fresh master key as the operator stores it: 32 random bytes, base64."""
    return base64.b64encode(os.urandom(32)).decode("ascii")


class MasterKeys:
    """The configured master keys, by fingerprint; the first wraps new data keys."""

    def __init__(self, secrets: tuple[bytes, ...]) -> None:
        self._secrets = secrets  # kept only so that reader processes can be handed the keys
        self.keys: dict[str, AESGCM] = {fingerprint(raw): AESGCM(raw) for raw in secrets}
        self.current = fingerprint(secrets[0])

    def __reduce__(self) -> tuple[type[MasterKeys], tuple[tuple[bytes, ...]]]:
        return (MasterKeys, (self._secrets,))

    def __repr__(self) -> str:  # never the keys
        return f"MasterKeys(current={self.current}, known={len(self.keys)})"

    @classmethod
    def parse(cls, text: str, source: str) -> MasterKeys:
        """Comma- or newline-separated base64 keys of 32 bytes, the current one first."""
        items = [item.strip() for item in text.replace("\n", ",").split(",") if item.strip()]
        if not items:
            raise MasterKeyError(f"{source} holds no master key")
        secrets: list[bytes] = []
        for number, item in enumerate(items, 1):
            try:
                raw = base64.b64decode(item, validate=True)
            except (binascii.Error, ValueError):
                raw = b""
            if len(raw) != 32:
                # The value is a secret: say which item and what shape, never the value.
                raise MasterKeyError(f"{source}: key {number} is not 32 bytes of base64")
            secrets.append(raw)
        return cls(tuple(secrets))

    def wrap(self, subject: str, data_key: bytes) -> tuple[str, bytes]:
        """(master fingerprint, wrapped data key) to store beside the log."""
        nonce = os.urandom(_NONCE)
        aad = _WRAP_CONTEXT + subject.encode("utf-8", "surrogatepass")
        return self.current, nonce + self.keys[self.current].encrypt(nonce, data_key, aad)

    def unwrap(self, subject: str, master: str, wrapped: bytes) -> bytes:
        aead = self.keys.get(master)
        if aead is None:
            raise MasterKeyError(
                f"a data key is wrapped by master key {master}, which is not configured "
                f"(configured: {', '.join(self.keys)}); set {MASTER_KEY} or {MASTER_KEY_FILE}"
            )
        aad = _WRAP_CONTEXT + subject.encode("utf-8", "surrogatepass")
        try:
            return aead.decrypt(wrapped[:_NONCE], wrapped[_NONCE:], aad)
        except InvalidTag:
            raise MasterKeyError(
                f"master key {master} does not open a data key it claims"
            ) from None


def new_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def record_aad(provider: str, dedup_key: str) -> bytes:
    """What a sealed record is bound to: its provider and dedup key (both kept in clear)."""
    return f"{provider}\x00{dedup_key}".encode("utf-8", "surrogatepass")


def seal(data_key: AESGCM, headers_json: bytes, body: bytes, aad: bytes) -> bytes:
    """FORMAT | nonce | AES-GCM(len(headers) | headers JSON | body)."""
    nonce = os.urandom(_NONCE)
    plain = _HEADERS_LEN.pack(len(headers_json)) + headers_json + body
    return FORMAT + nonce + data_key.encrypt(nonce, plain, aad)


def unseal(data_key: AESGCM, sealed: bytes, aad: bytes) -> tuple[bytes, bytes]:
    """(headers JSON, body) of a sealed value; InvalidTag if it is not this key's."""
    if sealed[:1] != FORMAT:
        raise ValueError("not a sealed value of a known format")
    nonce, cipher = sealed[1 : 1 + _NONCE], sealed[1 + _NONCE :]
    plain = data_key.decrypt(nonce, cipher, aad)
    (length,) = _HEADERS_LEN.unpack_from(plain)
    start = _HEADERS_LEN.size
    return plain[start : start + length], plain[start + length :]


def master_key_path(db_path: str | Path) -> Path:
    """`kycflow.db` -> `kycflow.master.key`: the first-run master key beside the database."""
    return Path(db_path).with_suffix(".master.key")


def load_master_keys(config: Mapping[str, str], db_path: str | Path) -> MasterKeys:
    """The master keys from KYCFLOW_MASTER_KEY, else the file KYCFLOW_MASTER_KEY_FILE names,
    else the first-run file beside the database (which must exist: see `ensure_master_key`)."""
    inline = (config.get(MASTER_KEY) or "").strip()
    if inline:
        return MasterKeys.parse(inline, MASTER_KEY)
    named = (config.get(MASTER_KEY_FILE) or "").strip()
    path = Path(named) if named else master_key_path(db_path)
    source = MASTER_KEY_FILE if named else str(path)
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise MasterKeyError(f"master key file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MasterKeyError(f"cannot read master key file {path}: {exc}") from None
    return MasterKeys.parse(text, source)


def configured_master_keys(
    config: Mapping[str, str], db_path: str | Path | None = None
) -> MasterKeys | None:
    """The master keys given (KYCFLOW_MASTER_KEY, else KYCFLOW_MASTER_KEY_FILE, else the
    first-run file beside the database when it exists); None when there are none."""
    named = any((config.get(k) or "").strip() for k in (MASTER_KEY, MASTER_KEY_FILE))
    if named or (db_path is not None and master_key_path(db_path).exists()):
        return load_master_keys(config, db_path or ".")
    return None


def ensure_master_key(config: Mapping[str, str], db_path: str | Path) -> Path | None:
    """First run: create the master key file beside the database when no key is configured.

    Only for a log that holds no data keys yet (the caller checks): generating a fresh key
    for a log sealed under a lost one would make every record unreadable. Returns the file
    created, or None.
    """
    if (config.get(MASTER_KEY) or "").strip() or (config.get(MASTER_KEY_FILE) or "").strip():
        return None
    path = master_key_path(db_path)
    if path.exists():
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="ascii") as handle:
        handle.write(new_master_key() + "\n")
    return path


def encryption_enabled(config: Mapping[str, str]) -> bool:
    """KYCFLOW_ENCRYPTION=off stores new raw bodies in the clear (benchmarks, debugging)."""
    raw = (config.get(ENCRYPTION) or "on").strip().lower()
    if raw not in {"on", "off"}:
        raise MasterKeyError(f"{ENCRYPTION} must be on or off, got {raw!r}")
    return raw == "on"
