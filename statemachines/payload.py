"""Tolerant reading of provider JSON: never raises, returns None for what is absent.

Providers add fields, change casing (Ondato) and send nulls; normalisers read only the
few fields they use, through these helpers, so a surprise becomes a reasoned
"unrecognised" outcome instead of an exception.
"""

from __future__ import annotations

import functools
import math
import re
from datetime import date
from typing import Any

import pydantic_core

JsonObject = dict[str, Any]


def parse_object(body: bytes) -> JsonObject | str:
    """The body as a JSON object, or the reason it is not one."""
    if not body.strip():
        return "empty body"
    try:
        # No string cache: it costs ~40% of the parse and states keep few parsed strings.
        doc = pydantic_core.from_json(body, cache_strings=False)
    except ValueError as exc:
        return f"body is not valid JSON: {str(exc)[:120]}"
    if not isinstance(doc, dict):
        return f"body is JSON {type(doc).__name__}, not an object"
    return doc


def get_ci(obj: Any, key: str) -> Any:
    """obj[key] matched case-insensitively (Ondato: camelCase or PascalCase)."""
    if type(obj) is not dict:
        return None
    if key in obj:
        return obj[key]
    lowered = key.lower()
    size = len(key)
    for name, value in obj.items():
        # Lowering a name never shortens it (and only lengthens U+0130, into a non-ASCII
        # result), so for our ASCII keys a name of another length cannot match: the length
        # test skips most lower() calls of a missing key's scan.
        if isinstance(name, str) and len(name) == size and name.lower() == lowered:
            return value
    return None


def dig(obj: Any, *path: str, ci: bool = False) -> Any:
    for key in path:
        obj = get_ci(obj, key) if ci else (obj.get(key) if type(obj) is dict else None)
    return obj


def text(obj: Any, *path: str, ci: bool = False) -> str | None:
    """A string (or integer rendered as one) at path; empty strings count as absent."""
    value: Any
    if len(path) == 1:  # the common case, without dig's loop and argument repacking
        key = path[0]
        value = get_ci(obj, key) if ci else (obj.get(key) if type(obj) is dict else None)
    else:
        value = dig(obj, *path, ci=ci)
    kind = type(value)
    if kind is str:
        stripped: str = value.strip()
        return stripped or None
    if kind is int:
        return str(value)
    return None


def integer(obj: Any, *path: str, ci: bool = False) -> int | None:
    return _integer(dig(obj, *path, ci=ci))


def _integer(value: Any) -> int | None:
    kind = type(value)  # exact types: bool is an int subclass and must not pass
    if kind is int:
        return int(value)
    if kind is float and value.is_integer():
        return int(value)
    if kind is str and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def epoch_seconds(obj: Any, *path: str) -> int | None:
    """Whole epoch seconds at path, from an integer or a float (iDenfy's 2019 examples sent
    `1554726960.324056`): the fraction is dropped, so a float and an integer timestamp of
    the same second name the same attempt."""
    value = dig(obj, *path)
    if type(value) is float and math.isfinite(value):
        return math.floor(value)
    return _integer(value)  # the value already read, not `integer(obj, *path)`


def strings(obj: Any, *path: str, ci: bool = False) -> tuple[str, ...]:
    """The string items of a list at path (non-strings skipped)."""
    value = dig(obj, *path, ci=ci)
    if type(value) is not list or not value:
        return ()
    return tuple(item for item in value if type(item) is str and item)


_SEPARATORS = re.compile(r"[\s_\-]")
_CACHED_TOKEN = 64  # longest value whose token is cached: statuses and event names are short


def token(value: str | None) -> str | None:
    """Canonical comparison form: 'In progress', 'IN_PROGRESS', 'InProgress' -> 'inprogress'."""
    if value is None:
        return None
    if len(value) <= _CACHED_TOKEN:  # the few names providers send, over and over
        return _token(value)
    return _SEPARATORS.sub("", value).lower()


# Bounded in entries and (above) in value length: the values are attacker-controlled.
@functools.lru_cache(maxsize=512)
def _token(value: str) -> str:
    return _SEPARATORS.sub("", value).lower()


_ISO = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(Z|[+-]\d{2}:?\d{2})?$"
)
_TICKS_PER_SECOND = 10_000_000  # 100 ns, the precision Ondato sends (7 fractional digits)
_EPOCH_DAY = date(1970, 1, 1).toordinal()


def utc_ticks(value: Any) -> int | None:
    """ISO-8601 time -> 100 ns ticks since the epoch, so times compare as times.

    Ondato's createdUtc carries 0-7 fractional digits; a naive time is taken as UTC.
    """
    if not isinstance(value, str):
        return None
    match = _ISO.match(value.strip())
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    hours, minutes, seconds = int(hour), int(minute), int(second)
    if hours > 23 or minutes > 59 or seconds > 59:  # what a datetime refuses
        return None
    try:  # a date and integer arithmetic: a third of the cost of datetime(...).timestamp()
        days = date(int(year), int(month), int(day)).toordinal() - _EPOCH_DAY
    except ValueError:
        return None
    ticks = (days * 86_400 + hours * 3_600 + minutes * 60 + seconds) * _TICKS_PER_SECOND
    if fraction:
        ticks += int(fraction[:7].ljust(7, "0"))
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        ticks -= sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60) * _TICKS_PER_SECOND
    return ticks
