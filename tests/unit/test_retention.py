"""The retention policy's settings (KYCFLOW_RETENTION, KYCFLOW_RETENTION_INTERVAL)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from streams.erasure.retention import from_config, parse

NOW = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "text, basis, seconds",
    [
        ("final+30d", "final", 30 * 86_400),
        ("last+90d", "last", 90 * 86_400),
        ("LAST+12h", "last", 12 * 3_600),
        ("final+1.5d", "final", 1.5 * 86_400),
        ("last+2s", "last", 2),
        (" final+10m ", "final", 600),
    ],
)
def test_a_policy_is_a_basis_and_a_duration(text: str, basis: str, seconds: float) -> None:
    policy = parse(text)
    assert policy is not None and (policy.basis, policy.seconds) == (basis, seconds)


def test_off_and_nothing_mean_no_retention() -> None:
    assert parse("off") is None and parse("") is None and parse("OFF") is None


@pytest.mark.parametrize("text", ["30d", "final", "final+", "final+30", "first+3d", "last-3d",
                                  "final+-1d", "final+3w", "final+3d+1h"])  # fmt: skip
def test_anything_else_is_refused_by_name(text: str) -> None:
    with pytest.raises(ValueError, match="KYCFLOW_RETENTION must be"):
        parse(text)


def test_the_cutoff_is_the_receive_time_format_of_the_log() -> None:
    policy = parse("last+1d")
    assert policy is not None
    assert policy.cutoff(NOW) == "2026-11-29T12:00:00.000000Z"
    # Receive times compare as text: a later one sorts after the cutoff.
    assert "2026-11-29T12:00:00.000001Z" > policy.cutoff(NOW) > "2026-11-29T11:59:59.999999Z"


def test_the_interval_defaults_to_an_hour_and_must_be_positive_seconds() -> None:
    assert from_config({}) == (None, 3600.0)
    policy, interval = from_config({"KYCFLOW_RETENTION": "final+30d",
                                    "KYCFLOW_RETENTION_INTERVAL": "0.5"})  # fmt: skip
    assert policy is not None and interval == 0.5
    for bad in ("0", "-1", "hourly", "nan"):
        with pytest.raises(ValueError, match="KYCFLOW_RETENTION_INTERVAL"):
            from_config({"KYCFLOW_RETENTION_INTERVAL": bad})
