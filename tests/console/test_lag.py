"""The overview's Kafka-mode lag, read from a real projector status server on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from streams.console.lag import ProjectorLag
from streams.kafka.config import KafkaSettings
from streams.kafka.status import Snapshot, StatusServer
from tests.e2e.service import free_port


@pytest.fixture
def status() -> Iterator[StatusServer]:
    server = StatusServer("127.0.0.1", 0).start()
    yield server
    server.stop()


def settings(port: int | None, host: str = "127.0.0.1") -> KafkaSettings:
    config = {"KYCFLOW_KAFKA_BOOTSTRAP": "127.0.0.1:9092", "KYCFLOW_KAFKA_METRICS_HOST": host}
    if port is not None:
        config["KYCFLOW_PROJECTOR_METRICS_PORT"] = str(port)
    found = KafkaSettings.from_config(config)
    assert found is not None
    return found


def test_what_the_projector_publishes(status: StatusServer) -> None:
    lag = ProjectorLag.of(settings(status.port))
    assert lag.read()["state"] == "starting"  # nothing published yet
    status.publish(Snapshot("", True, {"status": "ok", "stalled": [], "lag": 0}))
    assert lag.read() == {"state": "ok", "lag": 0, "stalled": [], "url": lag.url}
    stalled = {"status": "stalled", "stalled": ["k.status[3]"], "lag": 1234567}
    status.publish(Snapshot("", False, stalled))  # served with 503
    found = lag.read()
    assert found["state"] == "stalled" and found["lag"] == 1234567
    assert found["stalled"] == ["k.status[3]"]


def test_a_projector_listening_everywhere_is_asked_on_loopback(status: StatusServer) -> None:
    assert ProjectorLag.of(settings(status.port, "0.0.0.0")).url == (
        f"http://127.0.0.1:{status.port}/healthz"
    )
    assert ProjectorLag.of(settings(8125, "::")).url == "http://[::1]:8125/healthz"


def test_no_port_and_no_answer() -> None:
    assert ProjectorLag.of(settings(None)).read() == {"state": "unset"}
    silent = ProjectorLag.of(settings(free_port()))
    assert silent.read() == {"state": "unreachable", "url": silent.url}
