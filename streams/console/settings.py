"""The console's settings, read from kycflow's configuration (the environment over the
credentials file beside the database) by each HTTP worker when it mounts the console."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from streams.config import load_config
from streams.console.lag import ProjectorLag
from streams.kafka.config import KafkaSettings


@dataclass(frozen=True)
class ConsoleSettings:
    projector: ProjectorLag | None = None  # Kafka mode: where the projector tells its lag

    @classmethod
    def from_config(cls, config: Mapping[str, str]) -> ConsoleSettings:
        kafka = KafkaSettings.from_config(config)
        return cls(projector=None if kafka is None else ProjectorLag.of(kafka))

    @classmethod
    def load(cls, db_path: str) -> ConsoleSettings:
        return cls.from_config(load_config(os.environ, db_path))
