"""The console over real HTTP: authentication, CSRF, escaping and bad input on every page."""

from __future__ import annotations

import http.client
import re
from urllib.parse import quote, urlencode

import pytest

from projections import listing
from streams.console import auth
from tests.console.conftest import TOKEN, XSS, XSS_ID, wait_for
from tests.e2e.service import Service
from tests.payloads import ondato_document, ondato_kyb

BEARER = {"Authorization": f"Bearer {TOKEN}"}
SUBJECT = "/ui/verifications/idenfy/kyc/scan-1"
XSS_SUBJECT = "/ui/verifications/idenfy/kyc/" + quote(XSS_ID, safe="")
PAGES = [
    "/ui/",
    "/ui/verifications",
    "/ui/verifications?q=scan-1",
    "/ui/verifications?provider=idenfy&kind=kyc",
    SUBJECT,
    XSS_SUBJECT,
    "/ui/deliveries",
    "/ui/deliveries/1",
    "/ui/quarantine",
]


def call(
    service: Service,
    method: str,
    path: str,
    body: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, http.client.HTTPMessage, str]:
    """One request without following redirects."""
    conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=10)
    try:
        sent = dict(headers or {})
        if body is not None:
            sent.setdefault("Content-Type", "application/x-www-form-urlencoded")
        conn.request(method, path, body=body, headers=sent)
        response = conn.getresponse()
        return response.status, response.headers, response.read().decode()
    finally:
        conn.close()


def csrf_of(service: Service, path: str, headers: dict[str, str]) -> tuple[str, str]:
    """The CSRF cookie set with a page, and the value its forms carry."""
    status, response, text = call(service, "GET", path, headers=headers)
    assert status == 200, text
    cookie = response.get_all("Set-Cookie") or []
    value = next(c.split(";")[0].split("=", 1)[1] for c in cookie if c.startswith("kycflow_csrf"))
    field = re.search(r'name="csrf" value="([^"]+)"', text)
    assert field is not None
    return value, field.group(1)


def login(service: Service) -> str:
    """A session cookie, obtained through the login form."""
    cookie, field = csrf_of(service, "/ui/login", {})
    body = urlencode({"csrf": field, "token": TOKEN, "next": "/ui/"})
    status, headers, _ = call(
        service, "POST", "/ui/login", body, {"Cookie": f"kycflow_csrf={cookie}"}
    )
    assert status == 303
    session = next(
        c for c in headers.get_all("Set-Cookie") or [] if c.startswith("kycflow_session")
    )
    lowered = session.lower()
    assert "httponly" in lowered and "samesite=strict" in lowered and "max-age=" in lowered
    return session.split(";")[0]


@pytest.mark.parametrize("path", PAGES)
def test_without_credentials_a_page_redirects_to_login_and_shows_no_data(
    secured: Service, path: str
) -> None:
    status, headers, text = call(secured, "GET", path)
    assert status == 303
    assert headers["Location"].startswith("/ui/login?next=")
    assert "scan-1" not in text
    wrong = call(secured, "GET", path, headers={"Authorization": "Bearer wrong"})
    assert wrong[0] == 303


@pytest.mark.parametrize("path", PAGES)
def test_with_the_bearer_token_every_page_answers_with_a_csp(secured: Service, path: str) -> None:
    status, headers, text = call(secured, "GET", path, headers=BEARER)
    assert status == 200, text
    csp = headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert text.startswith("<!doctype html>")


@pytest.mark.parametrize("path", PAGES)
def test_webhook_markup_is_escaped_everywhere(secured: Service, path: str) -> None:
    text = call(secured, "GET", path, headers=BEARER)[2].lower()
    assert "<script>alert" not in text
    assert "<img src=x" not in text


def test_the_payload_is_shown_as_text(secured: Service) -> None:
    text = call(secured, "GET", XSS_SUBJECT, headers=BEARER)[2]
    assert "&lt;img src=x onerror=alert(1)&gt;" in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text.lower()  # the event type header


def test_login_sets_a_session_that_opens_the_pages(secured: Service) -> None:
    session = login(secured)
    status, _, text = call(secured, "GET", SUBJECT, headers={"Cookie": session})
    assert status == 200 and "scan-1" in text


def test_login_refuses_a_wrong_token_and_a_missing_csrf(secured: Service) -> None:
    cookie, field = csrf_of(secured, "/ui/login", {})
    jar = {"Cookie": f"kycflow_csrf={cookie}"}
    wrong = urlencode({"csrf": field, "token": "nope"})
    assert call(secured, "POST", "/ui/login", wrong, jar)[0] == 401
    no_csrf = urlencode({"token": TOKEN})
    assert call(secured, "POST", "/ui/login", no_csrf, jar)[0] == 403
    other = urlencode({"csrf": "0" * 32, "token": TOKEN})
    assert call(secured, "POST", "/ui/login", other, jar)[0] == 403


def test_login_never_redirects_off_the_console(secured: Service) -> None:
    cookie, field = csrf_of(secured, "/ui/login", {})
    body = urlencode({"csrf": field, "token": TOKEN, "next": "//evil.example/ui/"})
    _, headers, _ = call(secured, "POST", "/ui/login", body, {"Cookie": f"kycflow_csrf={cookie}"})
    assert headers["Location"] == "/ui/"


def test_a_forged_or_expired_session_is_refused(secured: Service) -> None:
    forged = auth.Guard("another-token").new_session()
    assert call(secured, "GET", "/ui/", headers={"Cookie": f"kycflow_session={forged}"})[0] == 303
    guard = auth.Guard(TOKEN)
    expired = guard.new_session(now=1_000_000.0)
    assert not guard.session_valid(expired)
    assert guard.session_valid(guard.new_session())


def test_reveal_needs_csrf_and_shows_the_personal_fields(secured: Service) -> None:
    session = login(secured)
    masked = call(secured, "GET", "/ui/deliveries/2", headers={"Cookie": session})[2]
    assert "AB123456" not in masked and "JOHN" not in masked and "masked" in masked
    cookie, field = csrf_of(secured, "/ui/deliveries/2", {"Cookie": session})
    jar = {"Cookie": f"{session}; kycflow_csrf={cookie}"}
    assert call(secured, "POST", "/ui/deliveries/2", "csrf=wrong", jar)[0] == 403
    assert call(secured, "POST", "/ui/deliveries/2", "", {"Cookie": session})[0] == 403
    status, _, text = call(secured, "POST", "/ui/deliveries/2", urlencode({"csrf": field}), jar)
    assert status == 200 and "AB123456" in text and "JOHN" in text


def test_a_post_without_credentials_is_401(secured: Service) -> None:
    assert call(secured, "POST", "/ui/deliveries/2", "csrf=x")[0] == 401


def test_bearer_posts_need_no_csrf(secured: Service) -> None:
    status, _, text = call(secured, "POST", "/ui/deliveries/2", "", BEARER)
    assert status == 200 and "AB123456" in text


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/ui/verifications?provider=nope", 400),
        ("/ui/verifications?cursor=%%%", 400),
        ("/ui/deliveries?before=abc", 400),
        ("/ui/deliveries/abc", 404),
        ("/ui/deliveries/99999", 404),
        ("/ui/verifications/idenfy/kyc/unknown", 404),
    ],
)
def test_bad_input_is_a_4xx_page(secured: Service, path: str, expected: int) -> None:
    status, headers, _ = call(secured, "GET", path, headers=BEARER)
    assert status == expected
    assert "Content-Security-Policy" in headers


def test_search_by_provider_id_and_pagination(secured: Service) -> None:
    text = call(secured, "GET", "/ui/verifications?q=scan-1", headers=BEARER)[2]
    assert "idenfy/kyc/scan-1" in text and "approved" in text
    none = call(secured, "GET", "/ui/verifications?q=scan-1&status=rejected", headers=BEARER)[2]
    assert "idenfy/kyc/scan-1" not in none


def test_timeline_shows_transitions_and_why_nothing_changed(secured: Service) -> None:
    text = call(secured, "GET", SUBJECT, headers=BEARER)[2]
    assert "approved" in text and "→" in text
    assert "hmac" in text  # the delivery's auth method


def test_open_mode_serves_the_pages_without_credentials(open_service: Service) -> None:
    for path in PAGES:
        status, headers, text = call(open_service, "GET", path)
        assert status == 200, path
        assert "Content-Security-Policy" in headers
        assert "<script>alert" not in text.lower()
    assert call(open_service, "GET", "/ui/login")[0] == 303


def test_ui_without_slash_goes_to_the_overview(secured: Service) -> None:
    status, headers, _ = call(secured, "GET", "/ui")
    assert status == 308 and headers["Location"] == "/ui/"


@pytest.mark.skipif(
    "reference" not in listing.PARAMETERS, reason="these projections keep no references"
)
def test_search_by_the_integrators_reference(secured: Service) -> None:
    text = call(secured, "GET", "/ui/verifications?q=client-42", headers=BEARER)[2]
    assert "idenfy/kyc/scan-1" in text
    markup = call(secured, "GET", "/ui/verifications?" + urlencode({"q": XSS}), headers=BEARER)
    assert "onerror=alert(1)&gt;" in markup[2]  # found by its reference, shown as text


def test_overview_counts_and_rate(secured: Service) -> None:
    text = call(secured, "GET", "/ui/", headers=BEARER)[2]
    assert re.search(r'id="last-minute">[1-9]\d* \(', text)  # the seeded webhooks, just now
    assert "idenfy/kyc/scan-1" in text  # a recent transition
    assert "approved: " in text  # counts by status


def test_logout_ends_the_browser_session(secured: Service) -> None:
    session = login(secured)
    cookie, field = csrf_of(secured, "/ui/", {"Cookie": session})
    jar = {"Cookie": f"{session}; kycflow_csrf={cookie}"}
    status, headers, _ = call(secured, "POST", "/ui/logout", urlencode({"csrf": field}), jar)
    assert status == 303
    cleared = next(c for c in headers.get_all("Set-Cookie") or [] if "kycflow_session" in c)
    assert 'kycflow_session=""' in cleared or "Max-Age=0" in cleared


def test_kyb_and_its_documents_link_both_ways(secured: Service) -> None:
    secured.send(ondato_kyb("Created", kyb="kyb-links", webhook_id="w-kyb-links"))
    secured.send(
        ondato_document("Created", document="doc-links", kyb="kyb-links", webhook_id="w-doc")
    )
    wait_for(secured, "ondato/kyb_document/doc-links", 1)
    kyb = call(secured, "GET", "/ui/verifications/ondato/kyb/kyb-links", headers=BEARER)[2]
    assert 'href="/ui/verifications/ondato/kyb_document/doc-links"' in kyb
    document = call(
        secured, "GET", "/ui/verifications/ondato/kyb_document/doc-links", headers=BEARER
    )
    assert 'href="/ui/verifications/ondato/kyb/kyb-links"' in document[2]
