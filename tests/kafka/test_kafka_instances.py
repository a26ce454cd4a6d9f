"""Kafka mode's `serve` (reads the projections) and `project` (their one writer) share a
database; a second of either is refused at once, naming the holder (real broker, real
processes)."""

from __future__ import annotations

import os
import subprocess

from tests.e2e.service import KYCFLOW, free_port
from tests.kafka.stack import KafkaStack


def test_serve_and_project_share_a_database_but_a_second_of_either_is_refused(
    stack: KafkaStack,
) -> None:
    service = stack.serve()
    projector = stack.start_projector()
    assert service.process is not None
    database = str(stack.db.resolve())
    env = {**os.environ, **stack.env, "KYCFLOW_PORT": str(free_port())}
    for command, holder in (("project", projector.pid), ("serve", service.process.pid)):
        done = subprocess.run(
            [KYCFLOW, command], env=env, capture_output=True, text=True, timeout=30
        )
        assert done.returncode == 1, done.stderr
        line = done.stderr.strip()
        assert "\n" not in line and database in line and f"pid {holder}" in line, line
    stack.kill(projector)
    stack.start_projector()  # its role was released with it
    stack.stop()
    assert not list(stack.db.parent.glob("*.lock"))
