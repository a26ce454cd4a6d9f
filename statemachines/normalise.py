"""The single entry point from raw envelope to canonical event; never raises."""

from __future__ import annotations

from collections.abc import Callable

from statemachines.envelope import UNREADABLE, RawEnvelope
from statemachines.events import Normalised, unrecognised
from statemachines.providers import idenfy, idwise, ondato

NORMALISERS: dict[str, Callable[[RawEnvelope], Normalised]] = {
    "idenfy": idenfy.normalise,
    "ondato": ondato.normalise,
    "idwise": idwise.normalise,
}


def normalise(env: RawEnvelope) -> Normalised:
    normaliser = NORMALISERS.get(env.provider)
    if env.provider == UNREADABLE:
        return unrecognised(env, "not a kycflow raw envelope record")
    if normaliser is None:
        return unrecognised(env, f"unknown provider {env.provider!r}")
    try:
        return normaliser(env)
    except Exception as exc:
        return unrecognised(env, f"normaliser error {type(exc).__name__}: {str(exc)[:200]}")
