"""Prometheus metrics shared by the service's processes, without locks.

The supervisor allocates one shared array before forking; each process (HTTP workers, the
processor) owns a slot and only ever writes its own, so increments need no lock. A scrape,
served by any worker, sums the slots. Nothing here carries personal data: labels are the
provider and the HTTP status only.
"""

from __future__ import annotations

import multiprocessing
from bisect import bisect_left
from collections.abc import Callable, Sequence
from typing import Any

PROVIDERS = ("idenfy", "ondato", "idwise")
# The statuses a webhook for a known provider can be refused with (an unknown provider's
# 404 has no provider to count it under); anything else is counted as "other", never as one
# of these.
REFUSALS = (400, 401, 403, 408, 413, 415, 431, 503, "other")
BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Layout:
    """Where each number lives inside one slot."""

    def __init__(self) -> None:
        self.size = 0
        self.accepted = self._take(len(PROVIDERS))
        self.duplicates = self._take(len(PROVIDERS))
        self.refused = self._take(len(PROVIDERS) * len(REFUSALS))
        self.quarantined = self._take(len(PROVIDERS))
        self.processed = self._take(1)
        self.ingest = self._take(len(BUCKETS) + 2)  # buckets, sum, count
        self.projection = self._take(len(BUCKETS) + 2)
        self.connections = self._take(1)  # a gauge: each worker adds its opens and closes
        self.header_timeouts = self._take(1)
        self.malformed = self._take(1)
        self.erasures = self._take(1)  # erasure records the processor folded
        self.retention_reduced = self._take(1)  # deliveries the retention policy reduced

    def _take(self, width: int) -> int:
        start, self.size = self.size, self.size + width
        return start


LAYOUT = Layout()


class Recorder:
    """One process's slot: the writer side of the metrics."""

    def __init__(self, array: Any, slot: int) -> None:
        self.array, self.base = array, slot * LAYOUT.size

    def _add(self, index: int, amount: float = 1.0) -> None:
        self.array[self.base + index] += amount

    def _observe(self, start: int, seconds: float) -> None:
        # One cell per bucket (not cumulative) keeps the hot path to three writes; the
        # scrape cumulates. Observations past the last bound only count in sum and count.
        bucket = bisect_left(BUCKETS, seconds)
        if bucket < len(BUCKETS):
            self._add(start + bucket)
        self._add(start + len(BUCKETS), seconds)
        self._add(start + len(BUCKETS) + 1)

    def accepted(self, provider: str, duplicate: bool, seconds: float) -> None:
        index = PROVIDERS.index(provider)
        self._add(LAYOUT.accepted + index)
        if duplicate:
            self._add(LAYOUT.duplicates + index)
        self._observe(LAYOUT.ingest, seconds)

    def rejected(self, provider: str, status: int) -> None:
        code = REFUSALS.index(status) if status in REFUSALS else len(REFUSALS) - 1
        self._add(LAYOUT.refused + PROVIDERS.index(provider) * len(REFUSALS) + code)

    def quarantined(self, provider: str) -> None:
        if provider in PROVIDERS:
            self._add(LAYOUT.quarantined + PROVIDERS.index(provider))

    def connections(self, delta: int) -> None:
        self._add(LAYOUT.connections, delta)

    def header_timeout(self) -> None:
        self._add(LAYOUT.header_timeouts)

    def malformed(self) -> None:
        self._add(LAYOUT.malformed)

    def erased(self, subjects: int) -> None:
        self._add(LAYOUT.erasures, subjects)

    def retention_reduced(self, deliveries: int) -> None:
        self._add(LAYOUT.retention_reduced, deliveries)

    def projected(self, events: int, latencies: Sequence[float]) -> None:
        self._add(LAYOUT.processed, events)
        for seconds in latencies:
            self._observe(LAYOUT.projection, seconds)


class SharedMetrics:
    def __init__(self, slots: int) -> None:
        self.slots = slots
        self.array = multiprocessing.RawArray("d", slots * LAYOUT.size)

    def recorder(self, slot: int) -> Recorder:
        return Recorder(self.array, slot)

    def total(self, index: int) -> float:
        return float(sum(self.array[s * LAYOUT.size + index] for s in range(self.slots)))

    def render(self, gauges: Callable[[], dict[str, float]]) -> str:
        """Prometheus text format 0.0.4."""
        lines: list[str] = []
        self._by_provider(
            lines,
            "kycflow_webhooks_accepted_total",
            "Webhooks durably stored (202).",
            LAYOUT.accepted,
        )
        self._by_provider(
            lines,
            "kycflow_webhooks_duplicate_total",
            "Accepted deliveries that repeated an earlier one.",
            LAYOUT.duplicates,
        )
        self._by_provider(
            lines,
            "kycflow_webhooks_quarantined_total",
            "Stored webhooks the core could not read.",
            LAYOUT.quarantined,
        )
        lines += [
            "# HELP kycflow_webhooks_rejected_total Webhooks refused, by HTTP status.",
            "# TYPE kycflow_webhooks_rejected_total counter",
        ]
        for p, provider in enumerate(PROVIDERS):
            for c, status in enumerate(REFUSALS):
                value = self.total(LAYOUT.refused + p * len(REFUSALS) + c)
                lines.append(
                    f'kycflow_webhooks_rejected_total{{provider="{provider}",'
                    f'status="{status}"}} {value:g}'
                )
        lines += [
            "# HELP kycflow_http_open_connections Open HTTP connections, all workers.",
            "# TYPE kycflow_http_open_connections gauge",
            f"kycflow_http_open_connections {self.total(LAYOUT.connections):g}",
            "# HELP kycflow_http_header_timeouts_total Connections closed (408) because request "
            "headers did not arrive within KYCFLOW_HEADER_TIMEOUT.",
            "# TYPE kycflow_http_header_timeouts_total counter",
            f"kycflow_http_header_timeouts_total {self.total(LAYOUT.header_timeouts):g}",
            "# HELP kycflow_http_malformed_requests_total Requests refused before routing: "
            "unparsable HTTP or oversized headers.",
            "# TYPE kycflow_http_malformed_requests_total counter",
            f"kycflow_http_malformed_requests_total {self.total(LAYOUT.malformed):g}",
            "# HELP kycflow_events_projected_total Raw-log events applied to projections.",
            "# TYPE kycflow_events_projected_total counter",
            f"kycflow_events_projected_total {self.total(LAYOUT.processed):g}",
            "# HELP kycflow_erasures_total Subject erasures folded into the projections "
            "(CLI and API alike).",
            "# TYPE kycflow_erasures_total counter",
            f"kycflow_erasures_total {self.total(LAYOUT.erasures):g}",
            "# HELP kycflow_retention_deliveries_reduced_total Raw deliveries the retention "
            "policy reduced to their events.",
            "# TYPE kycflow_retention_deliveries_reduced_total counter",
            f"kycflow_retention_deliveries_reduced_total {self.total(LAYOUT.retention_reduced):g}",
        ]
        self._histogram(
            lines, "kycflow_ingest_seconds", "From request start to the durable 202.", LAYOUT.ingest
        )
        self._histogram(
            lines,
            "kycflow_projection_lag_seconds",
            "From receipt to projection (raw received_at to commit).",
            LAYOUT.projection,
        )
        for name, value in gauges().items():
            lines += [f"# TYPE {name} gauge", f"{name} {value:g}"]
        return "\n".join(lines) + "\n"

    def _by_provider(self, lines: list[str], name: str, text: str, start: int) -> None:
        lines += [f"# HELP {name} {text}", f"# TYPE {name} counter"]
        for index, provider in enumerate(PROVIDERS):
            lines.append(f'{name}{{provider="{provider}"}} {self.total(start + index):g}')

    def _histogram(self, lines: list[str], name: str, text: str, start: int) -> None:
        lines += [f"# HELP {name} {text}", f"# TYPE {name} histogram"]
        cumulative = 0.0
        for offset, bound in enumerate(BUCKETS):
            cumulative += self.total(start + offset)
            lines.append(f'{name}_bucket{{le="{bound:g}"}} {cumulative:g}')
        count = self.total(start + len(BUCKETS) + 1)
        lines.append(f'{name}_bucket{{le="+Inf"}} {count:g}')
        lines.append(f"{name}_sum {self.total(start + len(BUCKETS)):g}")
        lines.append(f"{name}_count {count:g}")
