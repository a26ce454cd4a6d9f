"""The login budget's arithmetic, on an injected clock (the HTTP behaviour is in
test_console_login_limit.py)."""

from __future__ import annotations

from streams.console.throttle import LoginBudget, client_key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_then_one_attempt_per_refill() -> None:
    clock = Clock()
    budget = LoginBudget(burst=3, refill=6.0, clock=clock)
    for spent in (False, False, True):  # True: that one spent the budget
        assert budget.retry_after("192.0.2.1") == 0
        assert budget.failed("192.0.2.1") is spent
    assert budget.retry_after("192.0.2.1") == 6
    assert budget.retry_after("192.0.2.2") == 0  # another address has its own budget
    clock.now += 4
    assert budget.retry_after("192.0.2.1") == 2
    clock.now += 2
    assert budget.retry_after("192.0.2.1") == 0
    budget.failed("192.0.2.1")
    assert budget.retry_after("192.0.2.1") == 6
    clock.now += 3600
    assert budget.retry_after("192.0.2.1") == 0  # refilled, never above the burst
    for _ in range(3):
        budget.failed("192.0.2.1")
    assert budget.retry_after("192.0.2.1") == 6


def test_ipv6_counts_per_64_and_memory_is_bounded() -> None:
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::2")
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    budget = LoginBudget(burst=1, tracked=2, clock=Clock())
    for address in ("192.0.2.1", "192.0.2.2", "192.0.2.3"):
        budget.failed(address)
    assert len(budget.spent) == 2 and budget.retry_after("192.0.2.1") == 0
    assert budget.retry_after("192.0.2.3") > 0
