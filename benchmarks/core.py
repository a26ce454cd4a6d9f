"""Speed of kycflow's pure core: `statemachines.process.step` per event, against baselines.

What is measured, on this machine, in one run:

1. Speed. For each workload (iDenfy alone, Ondato alone, IDWise alone, and a mixed stream
   of all three with duplicate deliveries and reordered results) the raw envelopes are
   built first, outside the timed region: they are what a runtime reads from the log. The
   timed loop is exactly a runtime's: `step(env, states)` (parse + normalise + fold), then
   store the new state in a dict. Reported: µs/event and events/s, the median of ROUNDS
   rounds that interleave all workloads and measures (the host is noisy: slow spells of a
   few seconds at ~1.7x are common), plus the fastest round.
2. Baselines, timed in the same rounds on the same envelopes: (a) `json.loads` of the
   bodies alone, the floor any design pays (and `pydantic_core.from_json`, the parser the
   core uses); (b) `naive_step`, a deliberately naive design that builds a new
   `transitions.Machine` per event (design.md §8; see the comment above it). Ratios are
   medians of per-round ratios.
Memory is measured in `benchmarks.memory`.

Benchmarks print; they assert nothing. Run from the repository root:

    .venv/bin/python -m benchmarks        # or: make bench
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pydantic_core
from transitions import Machine

from benchmarks.traffic import Workload
from statemachines.envelope import RawEnvelope
from statemachines.events import Unrecognised
from statemachines.fold import SubjectState
from statemachines.machines import KYC, NEW
from statemachines.normalise import normalise
from statemachines.process import step

ROUNDS = 15  # timed rounds over every (workload, measure); medians are reported
NAIVE_EVENTS = 300  # the naive baseline is ~10x slower: time it on a prefix of each stream
TARGET_US_PER_EVENT = 25.0

Run = Callable[[Sequence[RawEnvelope]], None]


# --- What is timed -----------------------------------------------------------------------
def run_core(envelopes: Sequence[RawEnvelope]) -> None:
    """The runtime loop: step, then store the new state (as `process.replay` does)."""
    states: dict[str, SubjectState] = {}
    for env in envelopes:
        result = step(env, states)
        if result.outcome is not None:
            states[result.outcome.state.subject.key] = result.outcome.state


def run_json(envelopes: Sequence[RawEnvelope]) -> None:
    for env in envelopes:
        json.loads(env.body)


def run_from_json(envelopes: Sequence[RawEnvelope]) -> None:
    for env in envelopes:
        pydantic_core.from_json(env.body, cache_strings=False)  # as the core parses


# NAIVE BASELINE — not kycflow's design. The same `normalise` (parse included), then a new
# `transitions.Machine` per event, attached to a throwaway model set to the subject's last
# status. It does less than the core (no dedup, no precedence, no attempts, no effects), so
# naive ÷ core understates the gap; it also ends wrong when results arrive out of order.
KYC_STATES = [NEW, *KYC.statuses]
KYC_TRANSITIONS = [
    {
        "trigger": KYC.triggers[dest],
        "source": [
            src for src, trg, dst in KYC.table() if dst == dest and trg == KYC.triggers[dest]
        ],
        "dest": dest,
    }
    for dest in KYC.statuses
]


class NaiveModel:
    """The model object a per-event Machine is attached to (its `state` is the status)."""

    state: str


def naive_step(env: RawEnvelope, statuses: dict[str, str]) -> None:
    """Normalise as the core does, then build a Machine for the subject and trigger it."""
    event = normalise(env)
    if isinstance(event, Unrecognised) or event.status is None or event.subject.kind != "kyc":
        return
    key = event.subject.key
    model = NaiveModel()
    Machine(
        model=model,
        states=KYC_STATES,
        transitions=KYC_TRANSITIONS,
        initial=statuses.get(key, NEW),
        auto_transitions=False,
        ignore_invalid_triggers=True,
    )
    getattr(model, KYC.triggers[event.status])()
    statuses[key] = model.state


def run_naive(envelopes: Sequence[RawEnvelope]) -> None:
    statuses: dict[str, str] = {}
    for env in envelopes:
        naive_step(env, statuses)


def timed_us(run: Run, envelopes: Sequence[RawEnvelope]) -> float:
    """µs per event of one run over `envelopes`."""
    start = time.perf_counter_ns()
    run(envelopes)
    return (time.perf_counter_ns() - start) / len(envelopes) / 1_000


# name -> (what runs, how many events of each stream it gets; None: all)
MEASURES: dict[str, tuple[Run, int | None]] = {
    "json": (run_json, None),
    "from_json": (run_from_json, None),
    "core": (run_core, None),
    "naive": (run_naive, NAIVE_EVENTS),
}
Samples = dict[str, list[float]]  # measure -> µs/event, one per round


def sample_rounds(built: Sequence[Workload]) -> list[Samples]:
    """Per workload, ROUNDS samples of each measure, after one untimed warm-up of each.

    Every round runs every (workload, measure) pair once, so a slow spell of a noisy host
    lands on all of them alike instead of on one row, and a ratio can compare two numbers
    taken seconds apart.
    """
    cases = [
        (index, name, run, workload.envelopes[:limit])
        for index, workload in enumerate(built)
        for name, (run, limit) in MEASURES.items()
    ]
    for _, _, run, envelopes in cases:
        run(envelopes)
    samples: list[Samples] = [{name: [] for name in MEASURES} for _ in built]
    for _ in range(ROUNDS):
        for index, name, run, envelopes in cases:
            samples[index][name].append(timed_us(run, envelopes))
    return samples


# --- Speed report ------------------------------------------------------------------------
@dataclass(frozen=True)
class SpeedRow:
    workload: Workload
    samples: Samples

    def median(self, name: str) -> float:
        return statistics.median(self.samples[name])

    def ratio(self, top: str, bottom: str) -> float:
        """Median over rounds of top ÷ bottom measured in the same round."""
        pairs = zip(self.samples[top], self.samples[bottom], strict=True)
        return statistics.median(a / b for a, b in pairs)

    def cells(self) -> list[str]:
        core = self.median("core")
        return [
            self.workload.name,
            f"{len(self.workload.envelopes):,}",
            f"{self.workload.mean_body:,.0f}",
            f"{self.median('json'):.1f}",
            f"{self.median('from_json'):.1f}",
            f"{core:.1f}",
            f"{min(self.samples['core']):.1f}",
            f"{1e6 / core:,.0f}",
            f"{self.ratio('core', 'json'):.1f}x",
            f"{self.median('naive'):.0f}",
            f"{self.ratio('naive', 'core'):.1f}x",
            f"<= {TARGET_US_PER_EVENT:.0f}",
            "yes" if core <= TARGET_US_PER_EVENT else "NO",
        ]


SPEED_HEADERS = [
    "workload (µs/event)",
    "events",
    "body B",
    "json.loads",
    "from_json",
    "core",
    "core min",
    "core ev/s",
    "core/json",
    "naive",
    "naive/core",
    "target",
    "met?",
]


def measure_speed(built: Sequence[Workload]) -> list[SpeedRow]:
    return [SpeedRow(w, s) for w, s in zip(built, sample_rounds(built), strict=True)]
