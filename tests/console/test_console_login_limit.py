"""Wrong tokens at /ui/login over real HTTP: a budget per client address, then 429 with
Retry-After, for the right token too, until the budget refills.

One keep-alive connection stays on one HTTP worker, whose budget it spends (each worker
keeps its own: streams/console/throttle.py).
"""

from __future__ import annotations

import http.client
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest

from streams.console.throttle import BURST, REFILL
from tests.console.conftest import TOKEN
from tests.console.test_console_http import csrf_of
from tests.e2e.service import CREDENTIALS, Service


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    db = Path(tmp_path_factory.mktemp("console-login")) / "kycflow.db"
    env = {**CREDENTIALS, "KYCFLOW_API_TOKEN": TOKEN, "KYCFLOW_TRUSTED_PROXIES": "127.0.0.1"}
    running = Service(db, env).start()
    try:
        yield running
    finally:
        running.stop()


class Client:
    """One keep-alive connection with the login form's CSRF cookie."""

    def __init__(self, service: Service, forwarded_for: str | None = None) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=10)
        cookie, self.csrf = csrf_of(service, "/ui/login", {})
        self.headers = {
            "Cookie": f"kycflow_csrf={cookie}",
            "Content-Type": "application/x-www-form-urlencoded",
        }
        if forwarded_for:
            self.headers["X-Forwarded-For"] = forwarded_for

    def log_in(self, token: str) -> tuple[int, http.client.HTTPMessage, str]:
        body = urlencode({"csrf": self.csrf, "token": token, "next": "/ui/"})
        self.conn.request("POST", "/ui/login", body=body, headers=self.headers)
        response = self.conn.getresponse()
        return response.status, response.headers, response.read().decode()


def test_wrong_tokens_spend_the_budget_then_429(service: Service) -> None:
    client = Client(service)
    for _ in range(BURST):
        assert client.log_in("wrong-token")[0] == 401
    status, headers, text = client.log_in("wrong-token")
    assert status == 429 and "Too many wrong tokens" in text
    wait = int(headers["Retry-After"])
    assert 1 <= wait <= REFILL
    assert client.log_in(TOKEN)[0] == 429  # not even compared while refused
    assert "Content-Security-Policy" in headers

    other = Client(service, forwarded_for="192.0.2.7")  # another client behind the proxy
    assert other.log_in(TOKEN)[0] == 303

    time.sleep(wait)
    status, headers, _ = client.log_in(TOKEN)  # refilled: one attempt, and it is right
    assert status == 303 and headers["Location"] == "/ui/"
    assert client.log_in("wrong-token")[0] == 401
    assert client.log_in("wrong-token")[0] == 429  # still nothing saved up
    client.conn.close()
    other.conn.close()
