"""First-run credentials: generated once, only when nothing is configured, never overwritten."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from ingest.settings import IngestSettings
from streams.config import ConfigError, load_config
from streams.credentials import ensure_credentials


def test_nothing_configured_generates_a_private_file_that_configures_every_provider(
    tmp_path: Path,
) -> None:
    db = str(tmp_path / "kycflow.db")
    created = ensure_credentials({}, db)
    assert created == tmp_path / "kycflow.credentials.json"
    assert stat.S_IMODE(created.stat().st_mode) == 0o600
    settings = IngestSettings.from_config(load_config({}, db))
    assert settings.idenfy_signing_keys and settings.idwise_token
    assert settings.ondato_username and settings.ondato_client_secret


def test_any_configured_credential_means_nothing_is_generated(tmp_path: Path) -> None:
    db = str(tmp_path / "kycflow.db")
    assert ensure_credentials({"KYCFLOW_IDWISE_TOKEN": "set"}, db) is None
    assert not (tmp_path / "kycflow.credentials.json").exists()


def test_an_existing_file_without_credentials_is_reported_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "kycflow.credentials.json"
    path.write_text("{}")
    with pytest.raises(ConfigError, match="holds no provider credentials"):
        ensure_credentials({}, str(tmp_path / "kycflow.db"))
    assert json.loads(path.read_text()) == {}
