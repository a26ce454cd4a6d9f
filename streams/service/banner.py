"""What `kycflow serve` says once it listens: where its files are, and what to configure at
each provider (the webhook URL and how the provider must authenticate), with a warning for
whatever would make webhooks fail. Said once, on standard error, without secrets.
"""

from __future__ import annotations

import ipaddress
import os
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from ingest.rawlog import raw_log_path
from ingest.settings import IngestSettings
from streams.config import HINTS, credentials_path

if TYPE_CHECKING:
    from streams.service.supervisor import ServeSettings

OPERATIONS = "docs/operations.md"
WILDCARDS = {"", "0.0.0.0", "::"}


def report(settings: ServeSettings) -> str:
    base = base_url(settings.host, settings.port)
    lines = [_headline(settings, base), *_files(settings)]
    lines.append("Webhook URLs to configure at each provider:")
    for provider, methods in auth_methods(settings.ingest, base).items():
        state = f"enabled: {'; '.join(methods)}" if methods else "disabled: no credentials"
        lines.append(f"  {provider:<6}  {base}/webhooks/{provider}  {state}")
    guard = "bearer token" if settings.api_token else "no token"
    lines.append(f"Read API: {base}/verifications ({guard}); also /feed, /metrics, /openapi.json")
    lines += [f"warning: {warning}" for warning in warnings(settings)]
    return "\n".join(lines)


def base_url(host: str, port: int) -> str:
    """The service's URL as a provider would use it (a wildcard address is no address)."""
    if host in WILDCARDS:
        host = "<this machine's address>"
    elif ":" in host:
        host = f"[{host}]"  # IPv6 literal
    return f"http://{host}:{port}"


def auth_methods(ingest: IngestSettings, base: str = "") -> dict[str, list[str]]:
    """Per provider, the ways it may authenticate; empty: it has no credentials, so every
    webhook of it is refused."""
    idenfy = ["HMAC-SHA256 signature (Idenfy-Signature header)"]
    ondato = [
        method
        for method, pair in (
            ("HTTP Basic", (ingest.ondato_username, ingest.ondato_password)),
            (
                f"OAuth2 client credentials (token URL {base}/oauth/token)",
                (ingest.ondato_client_id, ingest.ondato_client_secret),
            ),
        )
        if all(pair)
    ]
    if ondato and ingest.ondato_allowed_networks:
        ondato.append("only from KYCFLOW_ONDATO_ALLOWED_IPS")
    idwise = [
        method
        for method, given in (
            ("bearer token", ingest.idwise_token),
            ("HTTP Basic", ingest.idwise_username and ingest.idwise_password),
            (f"{(ingest.idwise_header or ('',))[0]} header", ingest.idwise_header),
        )
        if given
    ]
    return {
        "idenfy": idenfy if any(ingest.idenfy_signing_keys) else [],
        "ondato": ondato,
        "idwise": idwise,
    }


def warnings(settings: ServeSettings) -> list[str]:
    found = [
        f"{provider} has no credentials, so every {provider} webhook is refused; "
        f"set {HINTS[provider]}"
        for provider, methods in auth_methods(settings.ingest).items()
        if not methods
    ]
    if _loopback(settings.host):
        found.append(
            f"bound to {settings.host}, which only this machine reaches: providers need "
            f"a public HTTPS URL, so put a TLS reverse proxy in front (see {OPERATIONS})"
        )
    for path in _paths(settings).values():
        mode = _mode(path)
        if mode is not None and mode & 0o077:
            found.append(
                f"{path} can be read by other users (mode {mode:04o}); it holds personal "
                f"data or secrets: chmod 600 it"
            )
    return found


def _headline(settings: ServeSettings, base: str) -> str:
    mode = f"Kafka mode, {settings.kafka.bootstrap}" if settings.kafka else "embedded mode"
    workers = f"{settings.workers} HTTP worker{'s' if settings.workers > 1 else ''}"
    return f"kycflow {_version()} listening on {base} ({workers}, {mode})"


def _files(settings: ServeSettings) -> list[str]:
    lines = [f"  {label:<12} {path}" for label, path in _paths(settings).items()]
    if settings.kafka is not None:
        raw = f"Kafka topic {settings.kafka.topic('raw')} (kycflow worker and project fold it)"
        lines.insert(1, f"  {'raw log':<12} {raw}")
    if _mode(credentials_path(Path(settings.db).absolute())) is None:
        lines[-1] += " (absent: credentials come from the environment)"
    return lines


def _paths(settings: ServeSettings) -> dict[str, Path]:
    """The files that hold personal data or secrets, by what they hold."""
    db = Path(settings.db).absolute()
    paths = {"projections": db, "raw log": raw_log_path(db), "credentials": credentials_path(db)}
    if settings.kafka is not None:
        del paths["raw log"]
    return paths


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _mode(path: Path) -> int | None:
    try:
        return os.stat(path).st_mode & 0o777
    except OSError:
        return None


def _version() -> str:
    try:
        return metadata.version("kycflow")
    except metadata.PackageNotFoundError:
        return "(development)"
