from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.service import CREDENTIALS, Service


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    running = Service(tmp_path / "kycflow.db", dict(CREDENTIALS)).start()
    yield running
    if running.process is not None:
        running.stop()
