"""A first `kycflow serve` says what to do, once, and keeps its files private (real
processes, real files)."""

from __future__ import annotations

import hmac
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests import payloads as p
from tests.e2e.service import KYCFLOW, Service


@pytest.fixture(autouse=True)
def no_kycflow_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Services started here inherit no KYCFLOW_* variable from the test runner."""
    for key in [key for key in os.environ if key.startswith("KYCFLOW_")]:
        monkeypatch.delenv(key)


def output_of(service: Service) -> str:
    return service.db.with_suffix(".log").read_text()


def mode(path: Path) -> str:
    return f"{path.stat().st_mode & 0o777:04o}"


def test_the_first_run_reports_files_and_provider_urls_once(tmp_path: Path) -> None:
    service = Service(tmp_path / "kycflow.db", {}).start()
    try:
        text = output_of(service)
    finally:
        service.stop()
    assert text.count("listening on") == 1 and "serving on" not in text, text
    assert f"listening on http://127.0.0.1:{service.port} " in text
    for name in ("kycflow.db", "kycflow.raw.db", "kycflow.credentials.json"):
        assert f" {tmp_path / name}\n" in text, text  # absolute, on a line of its own
    for provider in ("idenfy", "ondato", "idwise"):
        url = f"http://127.0.0.1:{service.port}/webhooks/{provider}"
        line = next(line for line in text.splitlines() if url in line)
        assert "enabled" in line
    assert "providers need a public HTTPS URL" in text and "reverse proxy" in text
    assert "no credentials" not in text
    secrets = (tmp_path / "kycflow.credentials.json").read_text()
    for secret in re.findall(r'"KYCFLOW_[A-Z_]+(?:KEY|PASSWORD|SECRET|TOKEN)": "([^"]+)"', secrets):
        assert secret not in text


def test_a_provider_without_credentials_is_reported_as_refusing_everything(
    tmp_path: Path,
) -> None:
    service = Service(tmp_path / "kycflow.db", {"KYCFLOW_IDWISE_TOKEN": "a-token"}).start()
    try:
        text = output_of(service)
    finally:
        service.stop()
    warnings = [line for line in text.splitlines() if line.startswith("warning:")]
    assert [w for w in warnings if "idenfy" in w and "KYCFLOW_IDENFY_SIGNING_KEY" in w], text
    assert [w for w in warnings if "ondato" in w and "KYCFLOW_ONDATO_USERNAME" in w], text
    assert not [w for w in warnings if "idwise" in w], text


def test_internal_socket_paths_are_not_said_at_info(tmp_path: Path) -> None:
    service = Service(tmp_path / "kycflow.db", {}).start()
    try:
        text = output_of(service)
    finally:
        service.stop()
    assert ".sock" not in text


def test_databases_their_wal_and_shm_credentials_and_replay_output_are_owner_only(
    tmp_path: Path,
) -> None:
    db = tmp_path / "kycflow.db"
    service = Service(db, {}).start()
    try:
        provider, headers, body = p.idenfy_identification("IDENTIFICATION_AUTO_FINISHED", "s")
        generated = json.loads((tmp_path / "kycflow.credentials.json").read_text())
        key = generated["KYCFLOW_IDENFY_SIGNING_KEY"].encode()
        headers = {**headers, "Idenfy-Signature": hmac.new(key, body, "sha256").hexdigest()}
        assert service.request("POST", f"/webhooks/{provider}", body, headers)[0] == 202
        service.wait_projected()  # the WAL and shared-memory files of both databases exist
        private = [
            path
            for path in tmp_path.iterdir()
            if path.name.startswith("kycflow.") and not path.name.endswith(".log")
        ]
        names = {path.name for path in private}
        assert {"kycflow.db-wal", "kycflow.db-shm", "kycflow.raw.db-wal"} <= names, names
        assert {"kycflow.credentials.json", "kycflow.db.lock"} <= names, names
        assert {path.name: mode(path) for path in private} == dict.fromkeys(names, "0600")
    finally:
        service.stop()
    copy = tmp_path / "copy.db"
    env = {**os.environ, "KYCFLOW_DB": str(db)}
    done = subprocess.run([KYCFLOW, "replay", "--to", str(copy)], env=env, capture_output=True)
    assert done.returncode == 0, done.stderr
    assert mode(copy) == "0600"
