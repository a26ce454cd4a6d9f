"""The start-up report of `kycflow serve` (streams.service.banner), from real settings and
real files."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.service.banner import base_url, report
from streams.service.supervisor import ServeSettings
from tests.e2e.service import CREDENTIALS


def settings(db: Path, **config: str) -> ServeSettings:
    return ServeSettings.from_config({"KYCFLOW_DB": str(db), **config})


def test_it_names_every_file_and_each_provider_url_and_method_but_no_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "kycflow.db"
    monkeypatch.chdir(tmp_path)
    text = report(settings(Path("kycflow.db"), **CREDENTIALS, KYCFLOW_PORT="8099"))
    for path in (db, tmp_path / "kycflow.raw.db", tmp_path / "kycflow.credentials.json"):
        assert f" {path}" in text  # absolute, whatever the working directory
    base = "http://127.0.0.1:8099"
    assert text.splitlines()[0].startswith("kycflow ")
    assert f"listening on {base} " in text.splitlines()[0]
    assert text.count("listening on") == 1
    lines = {line.split()[0]: line for line in text.splitlines() if "/webhooks/" in line}
    assert f"{base}/webhooks/idenfy" in lines["idenfy"] and "signature" in lines["idenfy"]
    assert f"{base}/webhooks/ondato" in lines["ondato"]
    assert "HTTP Basic" in lines["ondato"] and f"{base}/oauth/token" in lines["ondato"]
    assert f"{base}/webhooks/idwise" in lines["idwise"] and "bearer" in lines["idwise"]
    secrets = [value for key, value in CREDENTIALS.items() if not key.endswith("USERNAME")]
    assert not [secret for secret in secrets if secret in text]


def test_a_provider_without_credentials_is_disabled_with_a_warning_saying_what_to_set(
    tmp_path: Path,
) -> None:
    only_idenfy = {"KYCFLOW_IDENFY_SIGNING_KEY": "k"}
    text = report(settings(tmp_path / "kycflow.db", **only_idenfy))
    warnings = [line for line in text.splitlines() if line.startswith("warning:")]
    assert any("idwise" in w and "KYCFLOW_IDWISE_TOKEN" in w for w in warnings), text
    assert any("ondato" in w and "KYCFLOW_ONDATO_USERNAME" in w for w in warnings), text
    assert not any("idenfy" in w for w in warnings)
    idwise = next(line for line in text.splitlines() if "/webhooks/idwise" in line)
    assert "disabled" in idwise


def test_loopback_warns_that_providers_need_a_public_https_url(tmp_path: Path) -> None:
    loopback = report(settings(tmp_path / "kycflow.db", **CREDENTIALS))
    warning = [line for line in loopback.splitlines() if "reverse proxy" in line]
    assert len(warning) == 1 and "HTTPS" in warning[0] and "docs/operations.md" in warning[0]
    public = report(
        settings(
            tmp_path / "kycflow.db", **CREDENTIALS, KYCFLOW_HOST="0.0.0.0", KYCFLOW_API_TOKEN="t"
        )
    )
    assert "reverse proxy" not in public
    assert "http://<this machine's address>:8080/webhooks/idenfy" in public


def test_urls_bracket_an_ipv6_host() -> None:
    assert base_url("::1", 8080) == "http://[::1]:8080"
    assert base_url("::", 8080) == "http://<this machine's address>:8080"
    assert base_url("10.0.0.5", 80) == "http://10.0.0.5:80"


def test_other_idwise_and_ondato_methods_are_named(tmp_path: Path) -> None:
    text = report(
        settings(
            tmp_path / "kycflow.db",
            KYCFLOW_ONDATO_CLIENT_ID="id",
            KYCFLOW_ONDATO_CLIENT_SECRET="secret-value",
            KYCFLOW_ONDATO_ALLOWED_IPS="192.0.2.0/24",
            KYCFLOW_IDWISE_USERNAME="user",
            KYCFLOW_IDWISE_PASSWORD="password-value",
            KYCFLOW_IDWISE_HEADER="X-Request-Id: header-secret",
        )
    )
    ondato = next(line for line in text.splitlines() if "/webhooks/ondato" in line)
    assert "OAuth2" in ondato and "HTTP Basic" not in ondato and "ALLOWED_IPS" in ondato
    idwise = next(line for line in text.splitlines() if "/webhooks/idwise" in line)
    assert "HTTP Basic" in idwise and "X-Request-Id header" in idwise
    assert "secret-value" not in text and "password-value" not in text
    assert "header-secret" not in text


def test_kafka_mode_names_the_raw_topic_instead_of_a_raw_log_file(tmp_path: Path) -> None:
    kafka = {"KYCFLOW_KAFKA_BOOTSTRAP": "broker:9092", **CREDENTIALS}
    text = report(settings(tmp_path / "kycflow.db", **kafka))
    assert "kycflow.raw.db" not in text
    assert "Kafka topic kycflow.raw" in text and "Kafka mode, broker:9092" in text


def test_files_other_users_can_read_are_warned_about(tmp_path: Path) -> None:
    db = tmp_path / "kycflow.db"
    db.touch(mode=0o644)
    db.chmod(0o644)
    (tmp_path / "kycflow.raw.db").touch()
    (tmp_path / "kycflow.raw.db").chmod(0o600)
    text = report(settings(db, **CREDENTIALS))
    loose = [line for line in text.splitlines() if "chmod 600" in line]
    assert len(loose) == 1 and str(db) in loose[0] and "0644" in loose[0]
    assert "(absent: credentials come from the environment)" in text
