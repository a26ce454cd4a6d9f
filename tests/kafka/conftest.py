from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kafka.stack import Broker, KafkaStack


@pytest.fixture(scope="session")
def broker() -> Iterator[Broker]:
    """One Tansu broker for the session; each test gets its own topics and group."""
    running = Broker().start()
    yield running
    running.stop()


@pytest.fixture
def stack(broker: Broker, tmp_path: Path) -> Iterator[KafkaStack]:
    deployment = KafkaStack(broker, tmp_path)
    yield deployment
    deployment.stop()
    # Workers keep Faust's data directory out of the working directory.
    assert not Path(f"{deployment.name}-data").exists()
