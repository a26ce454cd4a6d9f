"""The console in a real browser: Debian's headless Chromium driven through Selenium.

Skipped only off Linux. On Linux a missing browser is a failure: `make test` installs
`chromium` and `chromium-driver` with apt first (the `browser` prerequisite).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from projections import listing
from tests.console.conftest import TOKEN, XSS_ID, most_eventful, wait_for
from tests.console.test_console_http import login
from tests.e2e.service import Service
from tests.payloads import idenfy_identification, ondato_kyb

if not sys.platform.startswith("linux"):
    pytest.skip("the browser tests use Debian's chromium packages", allow_module_level=True)

from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service as DriverService
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ready
from selenium.webdriver.support.ui import WebDriverWait

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,900",
)
WAIT = 10.0
SHOT_HEIGHT = 1600


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.fail("chromium and chromium-driver are missing: run `make test` (installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    session = webdriver.Chrome(options=options, service=DriverService(executable_path=driver))
    session.set_page_load_timeout(WAIT)
    try:
        yield session
    finally:
        session.quit()


def wait(browser: WebDriver) -> WebDriverWait[WebDriver]:
    # An element found on the page being left goes stale when the next one loads: look again.
    return WebDriverWait(browser, WAIT, ignored_exceptions=(StaleElementReferenceException,))


def shoot(browser: WebDriver, name: str) -> None:
    """Screenshots for the docs, when CONSOLE_SCREENSHOTS names a directory."""
    target = os.environ.get("CONSOLE_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        # The whole page, up to SHOT_HEIGHT: a timeline's annotations are below the fold.
        height = browser.execute_script("return document.documentElement.scrollHeight")
        browser.set_window_size(1280, min(int(height) + 150, SHOT_HEIGHT))
        try:
            browser.save_screenshot(str(Path(target) / f"{name}.png"))
        finally:
            browser.set_window_size(1280, 900)


def log_in(browser: WebDriver, service: Service) -> None:
    browser.get(service.url + "/ui/login")
    wait(browser).until(ready.presence_of_element_located((By.ID, "token")))
    browser.find_element(By.ID, "token").send_keys(TOKEN)
    browser.find_element(By.CSS_SELECTOR, "form.login button").click()
    wait(browser).until(ready.presence_of_element_located((By.ID, "recent")))


@pytest.fixture
def signed_out(browser: WebDriver) -> WebDriver:
    """The shared browser with no cookies at all. Every service here runs on 127.0.0.1 and
    cookies ignore the port, so without this a test would ride on the session (or CSRF
    cookie) an earlier test left: it would pass in the file's order and fail alone."""
    browser.execute_cdp_cmd("Network.clearBrowserCookies", {})
    return browser


@pytest.fixture
def operator(signed_out: WebDriver, secured: Service) -> WebDriver:
    """The browser with a session of its own on `secured`: this test logs in through the
    form over HTTP and hands the cookie to Chromium, which saves loading the login form
    and the overview in the browser each time (the first test logs in there)."""
    name, value = login(secured).split("=", 1)
    cookie = {"name": name, "value": value, "url": secured.url + "/ui/", "path": "/ui/"}
    signed_out.execute_cdp_cmd("Network.setCookie", {**cookie, "httpOnly": True})
    return signed_out


def test_log_in_search_and_open_a_timeline(signed_out: WebDriver, secured: Service) -> None:
    browser = signed_out
    browser.get(secured.url + "/ui/")  # no session yet: to the login form
    wait(browser).until(ready.presence_of_element_located((By.ID, "token")))
    assert "/ui/login?next=" in browser.current_url
    log_in(browser, secured)
    browser.get(secured.url + "/ui/verifications")
    browser.find_element(By.ID, "q").send_keys("scan-1")
    browser.find_element(By.CSS_SELECTOR, "form.search button").click()
    wait(browser).until(ready.url_contains("q=scan-1"))  # the results, not the page before
    link = wait(browser).until(ready.element_to_be_clickable((By.LINK_TEXT, "idenfy/kyc/scan-1")))
    if "reference" in listing.PARAMETERS:  # by the integrator's reference (iDenfy clientId)
        browser.get(secured.url + "/ui/verifications?q=client-42")
        link = wait(browser).until(
            ready.element_to_be_clickable((By.LINK_TEXT, "idenfy/kyc/scan-1"))
        )
    link.click()
    transitions = wait(browser).until(ready.presence_of_element_located((By.ID, "transitions")))
    assert "approved" in transitions.text
    steps = browser.find_element(By.ID, "steps").text
    assert "unknown iDenfy event type" in steps  # the annotation of a delivery that did nothing


def test_screenshots_of_simulated_traffic(signed_out: WebDriver, simulated: Service) -> None:
    """The docs' screenshots: traffic from `kycflow simulate` (70 verifications, reordered,
    some re-sent), never test data."""
    browser = signed_out
    log_in(browser, simulated)
    recent = browser.find_element(By.ID, "recent").text
    assert "idenfy/" in recent or "ondato/" in recent or "idwise/" in recent
    assert browser.find_element(By.ID, "lag").text == "0"
    shoot(browser, "overview")
    provider, kind, id = most_eventful(simulated.db).split("/", 2)
    browser.get(f"{simulated.url}/ui/verifications/{provider}/{kind}/{id}")
    transitions = wait(browser).until(ready.presence_of_element_located((By.ID, "transitions")))
    assert transitions.text.count("\n") >= 2  # a story worth showing
    steps = browser.find_element(By.ID, "steps").text
    assert "late" in steps or "duplicate" in steps  # and why some deliveries changed nothing
    shoot(browser, "timeline")


def test_a_status_change_arrives_live(operator: WebDriver, secured: Service) -> None:
    browser = operator
    browser.get(secured.url + "/ui/")
    wait(browser).until(ready.text_to_be_present_in_element((By.ID, "live-state"), "live"))
    secured.send(idenfy_identification(scan_ref="scan-live"))
    row = wait(browser).until(
        ready.text_to_be_present_in_element((By.ID, "recent"), "idenfy/kyc/scan-live")
    )
    assert row
    newest = browser.find_element(By.CSS_SELECTOR, "#recent tbody tr")
    assert "live-new" in (newest.get_attribute("class") or "")


def test_a_live_row_of_an_erased_subject_is_marked_erased(
    operator: WebDriver, secured: Service
) -> None:
    """A status change after an erasure (new deliveries are new data) arrives live marked
    as the server-rendered rows mark an erased subject."""
    browser = operator
    secured.send(idenfy_identification(scan_ref="scan-erased-live", final=False))
    wait_for(secured, "idenfy/kyc/scan-erased-live", 1)
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    path = "/verifications/idenfy/kyc/scan-erased-live"
    status, _, body = secured.request("DELETE", path, None, bearer)
    assert status == 200, body
    browser.get(secured.url + "/ui/")
    wait(browser).until(ready.text_to_be_present_in_element((By.ID, "live-state"), "live"))
    secured.send(
        idenfy_identification(
            "IDENTIFICATION_MANUAL_FINISHED", scan_ref="scan-erased-live", overall="DENIED"
        )
    )
    wait(browser).until(
        ready.text_to_be_present_in_element((By.CSS_SELECTOR, "#recent tr.live-new"), "rejected")
    )
    newest = browser.find_element(By.CSS_SELECTOR, "#recent tbody tr.live-new")
    assert "idenfy/kyc/scan-erased-live" in newest.text
    badge = newest.find_element(By.CSS_SELECTOR, "span.erased")
    assert (
        badge.get_attribute("title") == f"personal data erased at {json.loads(body)['erased_at']}"
    )


def test_reveal_a_masked_field(operator: WebDriver, secured: Service) -> None:
    browser = operator
    browser.get(secured.url + "/ui/deliveries/2")
    body = wait(browser).until(ready.presence_of_element_located((By.ID, "body")))
    assert "AB123456" not in body.text and "masked" in body.text
    browser.find_element(By.ID, "reveal").click()
    wait(browser).until(ready.presence_of_element_located((By.ID, "revealed-note")))
    assert "AB123456" in browser.find_element(By.ID, "body").text


def test_an_xss_payload_is_inert(operator: WebDriver, secured: Service) -> None:
    browser = operator
    browser.get(secured.url + "/ui/verifications/idenfy/kyc/" + quote(XSS_ID, safe=""))
    heading = wait(browser).until(ready.presence_of_element_located((By.TAG_NAME, "h1")))
    assert XSS_ID in heading.text  # shown as text
    assert browser.find_elements(By.CSS_SELECTOR, "main img") == []
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018 — raises when no alert is open


def test_a_timeline_shows_its_status_change_live(operator: WebDriver, secured: Service) -> None:
    browser = operator
    secured.send(ondato_kyb("Created", kyb="kyb-live", webhook_id="w-live-1"))
    wait_for(secured, "ondato/kyb/kyb-live", 1)
    browser.get(secured.url + "/ui/verifications/ondato/kyb/kyb-live")
    status = wait(browser).until(ready.presence_of_element_located((By.ID, "current-status")))
    before = status.text
    secured.send(ondato_kyb("Approved", kyb="kyb-live", webhook_id="w-live-2"))
    wait(browser).until(ready.text_to_be_present_in_element((By.ID, "current-status"), "approved"))
    assert before != "approved"
    assert "approved" in browser.find_element(By.ID, "transitions").text


def test_an_erased_subject_s_timeline_says_so(operator: WebDriver, secured: Service) -> None:
    browser = operator
    secured.send(idenfy_identification(scan_ref="scan-erased", client_id="client-erased"))
    wait_for(secured, "idenfy/kyc/scan-erased", 1)
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    status, _, body = secured.request(
        "DELETE", "/verifications/idenfy/kyc/scan-erased", None, bearer
    )
    assert status == 200, body
    browser.get(secured.url + "/ui/verifications/idenfy/kyc/scan-erased")
    note = wait(browser).until(ready.visibility_of_element_located((By.ID, "erased-note")))
    assert note.text.startswith(f"Personal data erased at {json.loads(body)['erased_at']}")
    assert "erasure of personal data" in browser.find_element(By.ID, "steps").text
    browser.find_element(By.CSS_SELECTOR, "#steps a[href^='/ui/deliveries/']").click()
    kept = wait(browser).until(ready.presence_of_element_located((By.ID, "kept")))
    assert '"status": "approved"' in kept.text and "AB123456" not in browser.page_source
    assert browser.find_elements(By.ID, "reveal") == []


def test_reprocess_the_quarantine_after_a_fix(signed_out: WebDriver, fixed: Service) -> None:
    browser = signed_out
    log_in(browser, fixed)
    browser.get(fixed.url + "/ui/quarantine")
    assert "readable, for" in browser.find_element(By.ID, "quarantine").text
    browser.find_element(By.ID, "reprocess").click()
    report = wait(browser).until(ready.presence_of_element_located((By.ID, "reprocessed")))
    assert "idenfy/kyc/scan-fixed: transition" in report.text
