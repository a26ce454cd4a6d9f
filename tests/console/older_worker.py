"""`kycflow worker` as an older version of the core would run it (tests only).

    python -m tests.console.older_worker

iDenfy webhooks for the scanRef `scan-fixed` come out unreadable, as from a normaliser
that did not know their event type yet; everything else is the real worker on the real
broker. Stopping it and starting the real `kycflow worker` is "deploying the fix": the
quarantined delivery stays in the quarantine until it is reprocessed.
"""

from __future__ import annotations

import os
import sys

from statemachines.envelope import RawEnvelope
from statemachines.events import CanonicalEvent, Normalised, unrecognised
from statemachines.normalise import NORMALISERS
from streams.config import load_config
from streams.kafka import worker
from streams.kafka.config import KafkaSettings

FIXED = "scan-fixed"
REASON = "unknown iDenfy event type (before the fix)"


def main() -> int:
    settings = KafkaSettings.from_config(load_config(os.environ))
    assert settings is not None
    current = NORMALISERS["idenfy"]

    def older(env: RawEnvelope) -> Normalised:
        found = current(env)
        if isinstance(found, CanonicalEvent) and found.subject.id == FIXED:
            return unrecognised(env, REASON)
        return found

    NORMALISERS["idenfy"] = older  # normalise() looks it up per call
    return worker.run_worker(settings)


if __name__ == "__main__":
    sys.exit(main())
