"""Nothing acknowledged is lost, nothing is applied twice — even after SIGKILL.

Clients post concurrently; the whole service (supervisor, writer, processor, HTTP workers)
is killed without warning mid-stream; after a restart every webhook that got a 202 is in
the raw log at the offset it was given, and each is reflected in the projections once.
"""

from __future__ import annotations

import signal
import sqlite3
import threading
import time

from ingest import rawlog
from tests import payloads as p
from tests.e2e.service import Service

CLIENTS = 8


def post_until_refused(service: Service, client: int, acked: dict[str, int]) -> None:
    for n in range(100_000):
        event_id = f"c{client}-{n}"
        webhook = p.idwise(
            "Finished Journey",
            event_id=event_id,
            journey=f"j-{event_id}",
            systemDecision="Complete",
        )
        try:
            status, answer = service.send(webhook)
        except OSError:
            return  # the server is gone
        if status != 202:
            return
        acked[event_id] = answer["offset"]


def test_every_acknowledged_webhook_survives_sigkill_exactly_once(service: Service) -> None:
    acked: dict[str, int] = {}
    clients = [
        threading.Thread(target=post_until_refused, args=(service, c, acked))
        for c in range(CLIENTS)
    ]
    for thread in clients:
        thread.start()
    time.sleep(1.5)
    service.stop(signal.SIGKILL)
    for thread in clients:
        thread.join(timeout=30)
    assert len(acked) > 100, "the clients were acknowledged before the crash"

    service.start()
    service.wait_projected()
    with sqlite3.connect(rawlog.raw_log_path(service.db)) as raw:
        stored = dict(raw.execute('SELECT dedup_key, "offset" FROM raw_log').fetchall())
    for event_id, offset in acked.items():
        assert stored.get(f"idwise:event:{event_id}") == offset, event_id
    with sqlite3.connect(service.db) as db:
        events = db.execute('SELECT count(*), count(DISTINCT "offset") FROM subject_events')
        assert events.fetchone() == (len(stored), len(stored))
        versions = db.execute("SELECT DISTINCT version FROM verifications").fetchall()
        assert versions == [(1,)]
        transitions = db.execute("SELECT count(*), count(DISTINCT subject) FROM transitions")
        assert transitions.fetchone() == (len(stored), len(stored))
    for event_id in list(acked)[:: max(1, len(acked) // 50)]:
        status, row = service.get(f"/verifications/idwise/kyc/j-{event_id}")
        assert (status, row["status"], row["version"]) == (200, "approved", 1)
