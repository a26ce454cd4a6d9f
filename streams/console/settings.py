"""The console's settings, read from kycflow's configuration (the environment over the
credentials file beside the database) by each HTTP worker when it mounts the console."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from ingest.settings import IngestSettings, Network
from streams.config import ConfigError, load_config
from streams.console.lag import ProjectorLag
from streams.kafka.config import KafkaSettings

SECURE_COOKIE = "KYCFLOW_CONSOLE_SECURE_COOKIE"
_FLAGS = {"true": True, "1": True, "yes": True, "on": True}
_FLAGS |= {"false": False, "0": False, "no": False, "off": False}


@dataclass(frozen=True)
class ConsoleSettings:
    projector: ProjectorLag | None = None  # Kafka mode: where the projector tells its lag
    # Cookies marked Secure on every request, not only on those that came over TLS: behind
    # a TLS-terminating proxy kycflow itself only sees plain HTTP.
    secure_cookie: bool = False
    # Proxies whose X-Forwarded-For names the client, as for ingest: the login budget is
    # per client address, not per proxy.
    trusted_proxies: tuple[Network, ...] = ()

    @classmethod
    def from_config(cls, config: Mapping[str, str]) -> ConsoleSettings:
        kafka = KafkaSettings.from_config(config)
        return cls(
            projector=None if kafka is None else ProjectorLag.of(kafka),
            secure_cookie=_flag(config, SECURE_COOKIE),
            trusted_proxies=IngestSettings.from_config(config).trusted_proxies,
        )

    @classmethod
    def load(cls, db_path: str) -> ConsoleSettings:
        return cls.from_config(load_config(os.environ, db_path))


def _flag(config: Mapping[str, str], key: str) -> bool:
    raw = config.get(key, "").strip().lower()
    if not raw:
        return False
    if raw not in _FLAGS:
        raise ConfigError(f"{key} must be true or false, got {raw!r}")
    return _FLAGS[raw]
