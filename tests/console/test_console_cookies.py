"""The console's cookies over real HTTP: `Secure` when the operator says the service sits
behind TLS (KYCFLOW_CONSOLE_SECURE_COOKIE), not otherwise."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.console.conftest import TOKEN
from tests.console.test_console_http import call, csrf_of, login
from tests.e2e.service import CREDENTIALS, Service


def cookies(service: Service, path: str) -> list[str]:
    return call(service, "GET", path)[1].get_all("Set-Cookie") or []


def secure(cookie: str) -> bool:
    return "secure" in [part.strip().lower() for part in cookie.split(";")]


@pytest.fixture(scope="module")
def behind_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    db = Path(tmp_path_factory.mktemp("console-tls")) / "kycflow.db"
    env = {**CREDENTIALS, "KYCFLOW_API_TOKEN": TOKEN, "KYCFLOW_CONSOLE_SECURE_COOKIE": "1"}
    running = Service(db, env).start()
    try:
        yield running
    finally:
        running.stop()


def test_the_operator_marks_the_cookies_secure(behind_tls: Service) -> None:
    (csrf,) = cookies(behind_tls, "/ui/login")
    assert csrf.startswith("kycflow_csrf=") and secure(csrf)
    cookie, field = csrf_of(behind_tls, "/ui/login", {})
    session = login(behind_tls)  # asserts HttpOnly, SameSite=Strict, Max-Age too
    answer = call(
        behind_tls,
        "POST",
        "/ui/login",
        f"csrf={field}&token={TOKEN}",
        {"Cookie": f"kycflow_csrf={cookie}"},
    )[1]
    (issued,) = [c for c in answer.get_all("Set-Cookie") or [] if c.startswith("kycflow_session")]
    assert secure(issued) and session.startswith("kycflow_session=")
    logout = call(
        behind_tls,
        "POST",
        "/ui/logout",
        f"csrf={field}",
        {"Cookie": f"{session}; kycflow_csrf={cookie}"},
    )
    (cleared,) = logout[1].get_all("Set-Cookie") or []
    assert logout[0] == 303 and cleared.startswith("kycflow_session=") and secure(cleared)


def test_plain_http_without_the_setting_is_not_secure(secured: Service) -> None:
    (csrf,) = cookies(secured, "/ui/login")
    assert not secure(csrf)


def test_a_setting_that_is_not_a_flag_stops_the_service(tmp_path: Path) -> None:
    env = {**CREDENTIALS, "KYCFLOW_CONSOLE_SECURE_COOKIE": "maybe"}
    service = Service(tmp_path / "kycflow.db", env)
    with pytest.raises(RuntimeError):  # the HTTP workers refuse to start: serve stops
        service.start(timeout=5)
    assert service.stop() != 0
    log = (tmp_path / "kycflow.log").read_text()
    assert "KYCFLOW_CONSOLE_SECURE_COOKIE must be true or false" in log
