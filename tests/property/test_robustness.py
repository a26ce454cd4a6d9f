"""Arbitrary bytes, JSON and headers in an envelope never raise out of the core.

Whatever a provider (or an attacker with valid credentials) sends, `step` answers with a
canonical event or a reasoned `Unrecognised` — the safety net in `normalise` must never
be what caught it, since that would mean a normaliser crashed.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from statemachines import Unrecognised, step
from statemachines.envelope import RawEnvelope
from statemachines.providers import idenfy, idwise, ondato

EXAMPLES = settings(max_examples=1000, deadline=None)
PROVIDERS = st.sampled_from(["idenfy", "ondato", "idwise"])
SCALARS = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=30,
)
EVENT_TYPES = st.sampled_from(
    list(idenfy.EVENT_TYPES) + list(ondato.EVENT_TYPES) + list(idwise.EVENT_TYPES) + ["X"]
)
FIELDS = st.sampled_from(
    [
        "scanRef",
        "id",
        "companyId",
        "monitoringId",
        "status",
        "final",
        "startTime",
        "finishTime",
        "approvalStatus",
        "expirationStatus",
        "expirationThreshold",
        "identityVerificationId",
        "kybIdentificationId",
        "statusReason",
        "journeyId",
        "eventId",
        "systemDecision",
        "manualDecision",
        "finalDecision",
        "updatedAMLVersionNumber",
        "requiredSteps",
        "createdUtc",
        "payload",
        "type",
        "body",
        "event",
        "submissionTime",
    ]
)


@st.composite
def shaped(draw: st.DrawFn) -> dict[str, Any]:
    """Provider-shaped objects with hostile values in the fields normalisers read."""
    fields = draw(st.dictionaries(FIELDS, JSON, max_size=8))
    inner = draw(st.dictionaries(FIELDS, JSON, max_size=8))
    kind = draw(EVENT_TYPES)
    return {
        **fields,
        "type": kind,
        "event": kind,
        "payload": inner,
        "body": inner,
        "status": draw(JSON | st.fixed_dictionaries({"overall": JSON})),
    }


def _check(provider: str, body: bytes, event_type: str | None) -> None:
    headers = {"Idenfy-Event-Type": event_type} if event_type is not None else {}
    env = RawEnvelope.receive(provider, body, headers, "2026-11-22T10:00:00.000000Z").at(1)
    result = step(env, {})
    if isinstance(result.event, Unrecognised):
        assert result.event.reason
        assert not result.event.reason.startswith("normaliser error"), result.event.reason
    else:
        assert result.outcome is not None


@EXAMPLES
@given(PROVIDERS, st.binary(max_size=300), st.none() | EVENT_TYPES)
def test_arbitrary_bytes_never_raise(provider: str, body: bytes, event_type: str | None) -> None:
    _check(provider, body, event_type)


@EXAMPLES
@given(PROVIDERS, JSON, st.none() | EVENT_TYPES | st.text(max_size=10))
def test_arbitrary_json_never_raises(provider: str, doc: Any, event_type: str | None) -> None:
    _check(provider, json.dumps(doc).encode(), event_type)


@EXAMPLES
@given(PROVIDERS, shaped(), st.none() | EVENT_TYPES)
def test_provider_shaped_json_with_hostile_values_never_raises(
    provider: str,
    doc: dict[str, Any],
    event_type: str | None,
) -> None:
    _check(provider, json.dumps(doc).encode(), event_type)


def test_deeply_nested_json_is_unrecognised_not_a_crash() -> None:
    for provider in ("idenfy", "ondato", "idwise"):
        _check(provider, b"[" * 100_000 + b"]" * 100_000, "IDENTIFICATION")
        _check(provider, b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "IDENTIFICATION")
