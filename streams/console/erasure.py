"""How the console shows erasure (docs/personal-data.md): the note on an erased subject's
timeline, and what is left of a delivery whose personal data is gone.

An erased subject keeps `erased_at`; its history holds the erasure record as an event with
effect `statemachines.fold.ERASURE`. Whether everything went (scope "all") is read from
that record when the raw log can be read, else from its annotation's reason, else from the
row itself: an erasure of everything leaves a bare row (no status, version 1).
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from statemachines import CanonicalEvent, RawEnvelope
from statemachines.fold import ERASURE

# The start of the fold's reason for an erasure of everything (statemachines.fold._erase).
EVERYTHING_REASON = "everything erased"


class Erasure(NamedTuple):
    at: str  # when the (latest) erasure was folded: the subject's erased_at
    everything: bool  # scope "all": the decision trail went too


def erasure_of(verification: dict[str, Any], steps: list[dict[str, Any]]) -> Erasure | None:
    """How the subject was erased, or None when it never was."""
    at = verification.get("erased_at")
    if not at:
        return None
    records = [step for step in steps if step["effect"] == ERASURE]
    if not records:  # e.g. the events table was written by an older projector
        return Erasure(str(at), bare(verification))
    return Erasure(str(at), _scope(records[-1]) == "all")


def bare(verification: dict[str, Any]) -> bool:
    return verification["status"] is None and verification["version"] == 1


def _scope(step: dict[str, Any]) -> str:
    canonical = step.get("canonical")
    if isinstance(canonical, CanonicalEvent) and canonical.erase:
        return canonical.erase
    return "all" if str(step.get("reason") or "").startswith(EVERYTHING_REASON) else "personal"


def reduced(envelope: RawEnvelope) -> bool:
    """Whether the delivery's body is gone (erasure, retention, a destroyed data key)."""
    return envelope.reduced is not None


def kept_event(envelope: RawEnvelope) -> str | None:
    """The canonical event a reduced delivery had become, pretty-printed; None when
    nothing was kept. It holds no personal data (statemachines.reduced), so it is shown
    unmasked; a kept form that is not JSON is shown as stored rather than not at all."""
    text = (envelope.reduced or "").strip()
    if not text:
        return None
    try:
        return json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False)
    except ValueError:
        return text
