"""The benchmarks keep working: their traffic is real, recognised provider traffic."""

from __future__ import annotations

from benchmarks.core import run_core, run_naive
from benchmarks.memory import hold_states
from benchmarks.traffic import stream
from statemachines import CanonicalEvent, normalise


def test_benchmark_traffic_is_recognised_and_runs_through_core_and_baseline() -> None:
    envelopes = stream(["idenfy", "ondato", "idwise"], 30, duplicates=0.3, swaps=0.25)
    assert all(isinstance(normalise(env), CanonicalEvent) for env in envelopes)
    run_core(envelopes)
    run_naive(envelopes)


def test_memory_benchmark_holds_one_state_per_subject() -> None:
    states = hold_states(30)
    assert len(states) == 30
    assert all(state.final and state.decided_by == "manual" for state in states.values())
