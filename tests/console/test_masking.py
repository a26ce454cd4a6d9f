"""Personal fields of real provider bodies are masked; ids and statuses stay readable."""

from __future__ import annotations

import json

from streams.console.masking import MASK, pretty
from tests.payloads import idenfy_identification, ondato_document


def test_idenfy_result_masks_the_person_and_keeps_the_ids() -> None:
    body = idenfy_identification(scan_ref="scan-9", client_id="client-9")[2]
    text, count = pretty(body, reveal=False)
    shown = json.loads(text)
    for field in ("docFirstName", "docLastName", "docNumber", "docDob", "docNationality"):
        assert shown["data"][field] == MASK, field
    assert shown["fileUrls"]["FRONT"] == MASK
    assert shown["clientIp"] == MASK and shown["clientLocation"] == MASK
    assert shown["scanRef"] == "scan-9" and shown["clientId"] == "client-9"
    assert shown["status"]["overall"] == "APPROVED"
    assert count >= 9
    for secret in ("JOHN", "AB123456", "1990-01-01", "amazonaws"):
        assert secret not in text
    revealed, none = pretty(body, reveal=True)
    assert "AB123456" in revealed and none == 0


def test_a_file_name_is_masked_and_a_body_that_is_not_json_is_hidden() -> None:
    body = ondato_document("Created", webhook_id="w-1")[2]
    assert "register-extract.pdf" not in pretty(body, reveal=False)[0]
    assert pretty(b"name=John", reveal=False)[0].startswith(MASK)
    assert pretty(b"name=John", reveal=True)[0] == "name=John"
