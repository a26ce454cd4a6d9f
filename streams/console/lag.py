"""Kafka mode's processor lag for the overview: what the projector says on its `/healthz`.

Embedded mode has its lag in the serve process's own gauges (raw log head minus the
processor's checkpoint). In Kafka mode the projector already computes, about once a second,
each output partition's end against the checkpoint in the database (`projector_watch`,
with the fetch high watermark, since Tansu's end offsets are short); the console asks it
when the overview is rendered, rather than opening a broker connection of its own. The
projector writes the SQLite file the console reads, so it runs on this host: its status
server is reached on loopback when it listens on every address. Read-only, and nothing is
added to the projector's loop; a projector that does not answer within `TIMEOUT` is
reported as such instead of slowing the page down.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from streams.kafka.config import KafkaSettings

TIMEOUT = 0.5  # seconds; the projector answers from memory, so a slow answer means trouble
ANY = {"", "0.0.0.0", "::"}


@dataclass(frozen=True)
class ProjectorLag:
    url: str | None  # the projector's /healthz; None: its port is not configured

    @classmethod
    def of(cls, kafka: KafkaSettings) -> ProjectorLag:
        if kafka.projector_metrics_port is None:
            return cls(None)
        host = kafka.metrics_host
        host = ("::1" if ":" in host else "127.0.0.1") if host in ANY else host
        host = f"[{host}]" if ":" in host else host
        return cls(f"http://{host}:{kafka.projector_metrics_port}/healthz")

    def read(self) -> dict[str, Any]:
        """{"state": "unset"|"unreachable"|"starting"|"ok"|"stalled", "lag", "stalled", "url"}"""
        if self.url is None:
            return {"state": "unset"}
        try:
            body = _get(self.url)
            found = json.loads(body)
            state = str(found["status"])
        except (OSError, ValueError, KeyError, TypeError):
            return {"state": "unreachable", "url": self.url}
        lag = found.get("lag")
        return {
            "state": state,
            "lag": int(lag) if isinstance(lag, int) else None,
            "stalled": [str(p) for p in found.get("stalled") or []],
            "url": self.url,
        }


def _get(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
            body: bytes = response.read(65536)
            return body
    except urllib.error.HTTPError as exc:  # 503 while stalled: the body still says why
        return bytes(exc.read(65536))
