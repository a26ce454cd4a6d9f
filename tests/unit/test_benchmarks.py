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


def test_kafka_benchmark_report_states_ratios_against_its_baselines() -> None:
    from benchmarks.kafka import report
    from benchmarks.service import Load

    table = report(Load(8000, 7, 14, 0), Load(10000, 5, 12, 0), 2000.0, 5000.0, 9000.0)
    assert "Kafka mode = 80% of it" in table
    assert "2.5x baseline" in table and "1.80x one worker" in table
