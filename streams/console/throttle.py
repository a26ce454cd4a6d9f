"""A budget of wrong tokens per client address at `/ui/login`, then 429 with Retry-After.

An API token is long and random, so guessing it is hopeless anyway; the budget stops a
guessing script from costing CPU and log lines for nothing. Each address may get `BURST`
tokens wrong in a row and then one more attempt every `REFILL` seconds (a token bucket); a
refused attempt is not compared at all, so even the right token waits. Addresses come from
ingest's `client_address` (X-Forwarded-For only from KYCFLOW_TRUSTED_PROXIES); IPv6
clients are counted per /64, the block one host usually holds.

In memory, per HTTP worker process: with N workers a client that spreads its attempts over
N connections gets N budgets (a keep-alive connection stays on one worker). At most
`TRACKED` addresses are remembered, the least recently failing forgotten first.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable

BURST = 10  # wrong tokens in a row: an operator's typos never reach it
REFILL = 6.0  # seconds per attempt regained: 10 a minute once the burst is spent
TRACKED = 10_000


def client_key(address: str) -> str:
    """The address counted: itself, or its /64 for IPv6."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class LoginBudget:
    def __init__(
        self,
        burst: int = BURST,
        refill: float = REFILL,
        tracked: int = TRACKED,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.burst, self.refill, self.tracked, self.clock = burst, refill, tracked, clock
        self.spent: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key: (level, at)

    def _level(self, key: str, now: float) -> float:
        """Attempts left for `key` now (a fraction while refilling)."""
        if key not in self.spent:
            return float(self.burst)
        level, at = self.spent[key]
        return min(float(self.burst), level + (now - at) / self.refill)

    def retry_after(self, address: str) -> int:
        """Whole seconds until `address` may try again; 0 when it may now."""
        level = self._level(client_key(address), self.clock())
        return 0 if level >= 1 else max(1, math.ceil((1 - level) * self.refill))

    def failed(self, address: str) -> bool:
        """One wrong token from `address`; True when that spent its budget."""
        key, now = client_key(address), self.clock()
        level = max(0.0, self._level(key, now) - 1)
        self.spent[key] = (level, now)
        self.spent.move_to_end(key)
        while len(self.spent) > self.tracked:
            self.spent.popitem(last=False)
        return level < 1
