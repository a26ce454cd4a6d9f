"""The operator console: server-rendered HTML pages under `/ui/` (issue 11).

Complete without JavaScript; `static/live.js` only adds live updates from the status feed.
The pages read the projections database read-only, and raw bodies the way `kycflow
inspect` does in each mode (the embedded raw log, or a reader of the Kafka raw topic).
"""

from streams.console.routes import setup_console

__all__ = ["setup_console"]
