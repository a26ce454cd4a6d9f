"""A real `kycflow serve` process on a free loopback port, for end-to-end tests."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from base64 import b64encode
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.payloads import Webhook

KYCFLOW = str(Path(sys.executable).parent / "kycflow")
CREDENTIALS = {
    "KYCFLOW_IDENFY_SIGNING_KEY": "idenfy-signing-key",
    "KYCFLOW_ONDATO_USERNAME": "ondato",
    "KYCFLOW_ONDATO_PASSWORD": "ondato-password",
    "KYCFLOW_ONDATO_CLIENT_ID": "ondato-client",
    "KYCFLOW_ONDATO_CLIENT_SECRET": "ondato-client-secret",
    "KYCFLOW_IDWISE_TOKEN": "idwise-token",
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Service:
    db: Path
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> Service:
        env = {
            **os.environ,
            **self.env,
            "KYCFLOW_DB": str(self.db),
            "KYCFLOW_PORT": str(self.port),
            "KYCFLOW_WORKERS": "2",
        }
        self.log = open(self.db.with_suffix(".log"), "ab")  # noqa: SIM115 — closed in stop()
        self.process = subprocess.Popen(
            [KYCFLOW, "serve"], env=env, stdout=self.log, stderr=self.log, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.get("/healthz")[0] == 200:
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"kycflow serve did not start; see {self.db.with_suffix('.log')}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            os.killpg(self.process.pid, sig)  # the whole process group: workers too
        code = self.process.wait(timeout=30)
        self.process = None
        self.log.close()
        return code

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, Any], bytes]:
        req = urllib.request.Request(
            self.url + path, data=body, method=method, headers=headers or {}
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    def get(self, path: str, token: str | None = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        status, _, body = self.request("GET", path, headers=headers)
        try:
            return status, json.loads(body)
        except ValueError:
            return status, body

    def send(self, webhook: Webhook) -> tuple[int, Any]:
        provider, headers, body = webhook
        status, _, answer = self.request(
            "POST", f"/webhooks/{provider}", body, {**headers, **signed(provider, body)}
        )
        return status, json.loads(answer)

    def wait_projected(self, timeout: float = 10.0) -> None:
        """Until the processor has applied everything in the raw log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, text = self.request("GET", "/metrics")[0::2]
            lag = [
                line
                for line in text.decode().splitlines()
                if line.startswith("kycflow_processor_lag_events ")
            ]
            if status == 200 and lag and float(lag[0].split()[1]) == 0:
                return
            time.sleep(0.05)
        raise TimeoutError("the processor did not catch up")


def signed(provider: str, body: bytes) -> dict[str, str]:
    """The credentials each provider sends, per CREDENTIALS."""
    if provider == "idenfy":
        key = CREDENTIALS["KYCFLOW_IDENFY_SIGNING_KEY"].encode()
        return {"Idenfy-Signature": hmac.new(key, body, hashlib.sha256).hexdigest()}
    if provider == "ondato":
        pair = f"{CREDENTIALS['KYCFLOW_ONDATO_USERNAME']}:{CREDENTIALS['KYCFLOW_ONDATO_PASSWORD']}"
        return {"Authorization": "Basic " + b64encode(pair.encode()).decode()}
    return {"Authorization": f"Bearer {CREDENTIALS['KYCFLOW_IDWISE_TOKEN']}"}
