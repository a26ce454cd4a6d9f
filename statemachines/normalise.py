"""The single entry point from raw envelope to canonical event; never raises."""

from __future__ import annotations

from collections.abc import Callable

from statemachines.envelope import UNREADABLE, RawEnvelope
from statemachines.events import CanonicalEvent, Normalised, unrecognised
from statemachines.providers import idenfy, idwise, ondato
from statemachines.reduced import CONTROL, event_to_json, read_erasure, read_reduced

NORMALISERS: dict[str, Callable[[RawEnvelope], Normalised]] = {
    "idenfy": idenfy.normalise,
    "ondato": ondato.normalise,
    "idwise": idwise.normalise,
    CONTROL: read_erasure,  # records kycflow writes itself: erasures
}


def normalise(env: RawEnvelope) -> Normalised:
    if env.reduced is not None:  # the body is gone; the event it had become was kept
        return read_reduced(env)
    normaliser = NORMALISERS.get(env.provider)
    if env.provider == UNREADABLE:
        return unrecognised(env, "not a kycflow raw envelope record")
    if normaliser is None:
        return unrecognised(env, f"unknown provider {env.provider!r}")
    try:
        return normaliser(env)
    except Exception as exc:
        return unrecognised(env, f"normaliser error {type(exc).__name__}: {str(exc)[:200]}")


def reduced_form(env: RawEnvelope, *, keep_reference: bool = False) -> str:
    """What to keep of a delivery whose personal data goes: the event it becomes, as JSON
    (`statemachines.reduced`), or "" when it becomes none (the quarantine's deliveries)."""
    event = normalise(env)
    if not isinstance(event, CanonicalEvent):
        return ""
    return event_to_json(event, keep_reference=keep_reference)
