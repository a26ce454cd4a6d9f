"""The shared-memory metrics of `kycflow serve`: what each refusal is counted as."""

from __future__ import annotations

import re

from streams.service.metrics import SharedMetrics


def _rejected(text: str) -> dict[tuple[str, str], float]:
    found = re.findall(
        r'kycflow_webhooks_rejected_total\{provider="(\w+)",status="(\w+)"\} (\S+)', text
    )
    return {(provider, status): float(value) for provider, status, value in found}


def test_a_refusal_is_counted_under_its_own_status_and_an_unlisted_one_as_other() -> None:
    metrics = SharedMetrics(slots=2)
    metrics.recorder(0).rejected("idwise", 401)
    metrics.recorder(1).rejected("idwise", 401)
    metrics.recorder(1).rejected("ondato", 418)
    counted = _rejected(metrics.render(dict))
    assert counted[("idwise", "401")] == 2
    assert counted[("ondato", "other")] == 1
    assert counted[("ondato", "400")] == 0  # an unlisted status is not passed off as a 400
    assert sum(counted.values()) == 3


def test_no_series_for_a_status_that_cannot_happen() -> None:
    # A 404 is an unknown provider: there is no provider to count it under.
    statuses = {status for _, status in _rejected(SharedMetrics(slots=1).render(dict))}
    assert "404" not in statuses
    assert {"400", "401", "403", "408", "413", "415", "431", "503", "other"} == statuses
