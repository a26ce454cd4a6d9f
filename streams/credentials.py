"""First run: generate provider credentials once, so a newcomer has a working service.

Only when nothing is configured at all (no provider credential in the environment or the
file): a partially configured deployment is an operator's choice, and silently opening
another provider's endpoint with secrets nobody holds would surprise them. The file is
created with mode 0600 and never printed; `kycflow simulate` reads it.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from ingest.settings import CREDENTIAL_KEYS
from streams.config import ConfigError, credentials_path


def generate() -> dict[str, str]:
    return {
        "KYCFLOW_IDENFY_SIGNING_KEY": secrets.token_hex(32),
        "KYCFLOW_ONDATO_USERNAME": "ondato",
        "KYCFLOW_ONDATO_PASSWORD": secrets.token_urlsafe(24),
        "KYCFLOW_ONDATO_CLIENT_ID": "ondato-" + secrets.token_hex(4),
        "KYCFLOW_ONDATO_CLIENT_SECRET": secrets.token_urlsafe(32),
        "KYCFLOW_IDWISE_TOKEN": secrets.token_urlsafe(32),
    }


def ensure_credentials(config: Mapping[str, str], db_path: str) -> Path | None:
    """Write generated credentials if none are configured; returns the file it created."""
    if any(config.get(key) for key in CREDENTIAL_KEYS):
        return None
    path = credentials_path(db_path)
    if path.exists():  # never overwrite: an operator may have emptied it on purpose
        raise ConfigError(f"{path} holds no provider credentials; fill it in or remove it")
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(generate(), handle, indent=2)
        handle.write("\n")
    return path
