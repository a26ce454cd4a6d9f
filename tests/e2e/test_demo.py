"""`make demo` beside a running `make run`: the traffic goes to the service that answers."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.e2e.service import CREDENTIALS, Service


def test_demo_sends_its_traffic_to_a_service_already_running(service: Service) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KYCFLOW_")}
    env |= CREDENTIALS | {"KYCFLOW_DB": str(service.db), "KYCFLOW_PORT": str(service.port)}
    done = subprocess.run(
        [sys.executable, "-m", "streams.simulator.demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert f"already answers on {service.url}" in done.stdout
    service.wait_projected()
    status, page = service.get("/verifications?limit=500")
    assert status == 200 and len(page["items"]) >= 100  # 200 simulated verifications
    assert service.process is not None and service.process.poll() is None  # left running
