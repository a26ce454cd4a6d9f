"""Personal fields in a raw webhook body, masked until the operator asks to see them.

Masking is by field name (names, dates of birth, document numbers, addresses, contact
details, photos and files) and by value (any URL: providers send links to photos and
scans). It errs toward masking: an id hidden by mistake is one click away; a leaked
passport number is not.
"""

from __future__ import annotations

import json
import re
from typing import Any

MASK = "••• masked •••"
# Compared with the key lower-cased and without separators: firstName, first_name, FIRST-NAME.
_PERSONAL = re.compile(
    r"name|birth|dob|document(number|no)|docnumber|personal(code|number)|idnumber|passport"
    r"|address|street|city|zip|postcode|postal|email|phone|mobile|photo|image|selfie|face"
    r"|file|url|portrait|signature|nationalid|taxid|ssn|iban|sex|gender|nationality"
    r"|clientip|ipaddress|location"
)
_KEEP = re.compile(r"eventname|eventtype|filetype|filename_?type")  # not personal


def personal_key(key: str) -> bool:
    plain = re.sub(r"[^a-z0-9]", "", key.lower())
    return bool(_PERSONAL.search(plain)) and not _KEEP.fullmatch(plain)


def mask(value: Any) -> tuple[Any, int]:
    """The value with personal fields replaced by MASK, and how many were masked."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        count = 0
        for key, item in value.items():
            if personal_key(str(key)) and item not in (None, "", [], {}):
                if isinstance(item, dict | list):
                    out[key], inner = mask_all(item)
                    count += inner
                else:
                    out[key], count = MASK, count + 1
            else:
                out[key], inner = mask(item)
                count += inner
        return out, count
    if isinstance(value, list):
        items = [mask(item) for item in value]
        return [i for i, _ in items], sum(c for _, c in items)
    if isinstance(value, str) and re.match(r"(?i)https?://", value):
        return MASK, 1
    return value, 0


def mask_all(value: Any) -> tuple[Any, int]:
    """Every scalar inside a personal object or list (an address object, a photo list)."""
    if isinstance(value, dict):
        pairs = {k: mask_all(v) for k, v in value.items()}
        return {k: v for k, (v, _) in pairs.items()}, sum(c for _, c in pairs.values())
    if isinstance(value, list):
        items = [mask_all(v) for v in value]
        return [v for v, _ in items], sum(c for _, c in items)
    return (MASK, 1) if value not in (None, "") else (value, 0)


def pretty(body: bytes, reveal: bool) -> tuple[str, int]:
    """The body pretty-printed (masked unless `reveal`), and the number of masked fields.

    A body that is not JSON is shown only when revealed: it cannot be masked by field.
    """
    try:
        doc = json.loads(body)
    except ValueError:
        text = body.decode("utf-8", "replace")
        return (text, 0) if reveal else (MASK + " (not JSON)", 1)
    masked, count = (doc, 0) if reveal else mask(doc)
    return json.dumps(masked, indent=2, ensure_ascii=False, sort_keys=False), count
