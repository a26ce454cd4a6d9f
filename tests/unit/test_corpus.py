"""The corpus (tests/corpus): real provider bodies from public sources, each through the core
as `kycflow normalise` runs it, against what its documentation implies (manifest.json).

Every body is also delivered twice, and every iDenfy body under every other event-type
header, without changing what it folds to; the manifest's sequences fold in every order.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from statemachines import CanonicalEvent, RawEnvelope, Unrecognised, normalise, replay
from statemachines.fold import SubjectState, fold
from statemachines.providers.idenfy import EVENT_TYPES as IDENFY_EVENT_TYPES

CORPUS = Path(__file__).resolve().parent.parent / "corpus"
MANIFEST = json.loads((CORPUS / "manifest.json").read_text())
BODIES = {entry["id"]: entry for entry in MANIFEST["bodies"]}
RECEIVED_AT = "2026-11-30T12:00:00.000000Z"
EVENT_FIELDS = ("status", "final", "decided_by", "reference", "provider_status", "event_type")
STATE_FIELDS = ("status", "final", "decided_by", "reference", "attempt", "version")


def envelope(entry: dict[str, Any], offset: int = 0, header: str | None = None) -> RawEnvelope:
    """The envelope ingest would store for this body (as `kycflow normalise` builds it)."""
    body = (CORPUS / entry["file"]).read_bytes()
    event_type = header if header is not None else entry.get("event_type")
    headers = {"Content-Type": "application/json"}
    if event_type:
        headers["Idenfy-Event-Type"] = event_type
    return RawEnvelope.receive(entry["provider"], body, headers, RECEIVED_AT).at(offset)


def fold_one(event: CanonicalEvent) -> SubjectState:
    return fold(None, event).state


@pytest.mark.parametrize("entry", MANIFEST["bodies"], ids=list(BODIES))
def test_body_reads_as_its_documentation_says(entry: dict[str, Any]) -> None:
    expect = entry["expect"]
    env = envelope(entry)
    result = normalise(env)
    if expect.get("quarantined"):
        assert isinstance(result, Unrecognised), result
        assert not result.reason.startswith("normaliser error"), result.reason
        return
    assert isinstance(result, CanonicalEvent), result
    assert result.recognised, result
    assert result.subject.key == expect["subject"]
    for name in EVENT_FIELDS:
        if name in expect:
            assert getattr(result, name) == expect[name], name
    if "references" in expect:
        assert list(result.references) == expect["references"]
    if "reasons" in expect:
        assert list(result.reasons) == expect["reasons"]
    if "attempt_key" in expect:
        assert (result.order.attempt, result.order.time) == (expect["attempt_key"], expect["time"])
    if "dedup" in expect:
        assert env.dedup_key.startswith(expect["dedup"]), env.dedup_key
    state = fold_one(result)
    assert (state.status, state.final, state.decided_by) == (
        expect["status"],
        expect["final"],
        expect["decided_by"],
    )
    assert state.reference == expect.get("reference", state.reference)


@pytest.mark.parametrize("entry", MANIFEST["bodies"], ids=list(BODIES))
def test_body_delivered_twice_folds_as_once(entry: dict[str, Any]) -> None:
    assert replay([envelope(entry, 0), envelope(entry, 1)]) == replay([envelope(entry, 0)])


IDENFY = [
    entry
    for entry in MANIFEST["bodies"]
    if entry["provider"] == "idenfy" and not entry["expect"].get("quarantined")
]


@pytest.mark.parametrize("entry", IDENFY, ids=[entry["id"] for entry in IDENFY])
def test_idenfy_body_under_any_other_header_moves_nothing(entry: dict[str, Any]) -> None:
    once = replay([envelope(entry, 0)])
    for header in ("", *IDENFY_EVENT_TYPES, "SOMETHING_NEW"):
        assert replay([envelope(entry, 0), envelope(entry, 1, header)]) == once, header


@pytest.mark.parametrize("sequence", MANIFEST["sequences"], ids=lambda s: s["id"])
def test_sequence_folds_the_same_in_every_order(sequence: dict[str, Any]) -> None:
    entries = [BODIES[name] for name in sequence["bodies"]]
    expect = sequence["expect"]
    seen = set()
    for order in itertools.permutations(entries):
        states = replay([envelope(entry, offset) for offset, entry in enumerate(order)])
        assert len(states) == 1, states
        state = next(iter(states.values()))
        seen.add(tuple(getattr(state, name) for name in STATE_FIELDS if name in expect))
    assert seen == {tuple(expect[name] for name in STATE_FIELDS if name in expect)}


def test_every_corpus_file_is_in_the_manifest() -> None:
    files = {str(path.relative_to(CORPUS)) for path in CORPUS.rglob("*.json")}
    assert files - {"manifest.json"} == {entry["file"] for entry in MANIFEST["bodies"]}


def test_every_entry_names_its_source_and_fidelity() -> None:
    for entry in MANIFEST["bodies"]:
        assert entry["source"] and entry["date"] and entry["documentation"], entry["id"]
        assert entry["fidelity"].split(":")[0].split(" ")[0] in {
            "verbatim",
            "repaired",
            "abridged",
            "instantiated",
            "reconstructed",
        }, entry["id"]
