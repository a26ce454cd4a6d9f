"""The console in Kafka mode: pages read the projector's database, raw bodies come from
the raw topic (as `kycflow inspect` reads them), markup from a webhook stays text."""

from __future__ import annotations

from urllib.parse import quote

from tests.console.conftest import XSS, XSS_ID, xss_webhooks
from tests.console.test_console_http import call
from tests.kafka.stack import KafkaStack
from tests.kafka.test_kafka_mode import NOT_JSON, send_all
from tests.payloads import idenfy_identification


def test_console_pages_in_kafka_mode(stack: KafkaStack) -> None:
    service = stack.serve()
    stack.start_worker()
    stack.start_projector()
    sent = [idenfy_identification(scan_ref="scan-k"), *xss_webhooks(), NOT_JSON]
    offsets = send_all(service, sent)
    stack.wait_projected(len(sent))
    timeline = call(service, "GET", "/ui/verifications/idenfy/kyc/scan-k")[2]
    assert "approved" in timeline and "hmac" in timeline  # auth method from the raw topic
    raw = call(service, "GET", f"/ui/deliveries/{offsets[0]}")
    assert raw[0] == 200 and "scan-k" in raw[2] and "AB123456" not in raw[2]
    revealed = call(service, "POST", f"/ui/deliveries/{offsets[0]}", "csrf=x")
    assert revealed[0] == 403  # no CSRF cookie: refused in this mode too
    xss = call(service, "GET", "/ui/verifications/idenfy/kyc/" + quote(XSS_ID, safe=""))[2]
    assert "&lt;img src=x" in xss and XSS.lower() not in xss.lower()
    quarantine = call(service, "GET", "/ui/quarantine")[2]
    assert "still unreadable" in quarantine
    overview = call(service, "GET", "/ui/")
    assert overview[0] == 200 and "Content-Security-Policy" in overview[1]
