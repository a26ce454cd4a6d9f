"""How a long-running process learns it should stop."""

from __future__ import annotations


class StopFlag:
    """Set by SIGTERM/SIGINT. A plain attribute, never a multiprocessing.Event: a signal
    handler that takes the Event's lock while the loop holds it in is_set() deadlocks the
    process (seen once in the e2e suite: processor and supervisor both stuck)."""

    def __init__(self) -> None:
        self.stopping = False

    def set(self, *_: object) -> None:
        self.stopping = True

    def is_set(self) -> bool:
        return self.stopping
