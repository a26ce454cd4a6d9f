"""Speed of the normaliser alone: `statemachines.normalise.normalise`, µs per envelope.

The encrypted ingest path normalises every webhook twice (the HTTP worker names its subject
with `statemachines.routing.routing_key`, the processor normalises again), so this is timed
apart from the fold. Per provider workload of `benchmarks.traffic`, and per event type
within it: the median of ROUNDS interleaved rounds (the host is noisy) and the fastest
round, beside `pydantic_core.from_json` of the same bodies, the parse every normalise pays.

    .venv/bin/python -m benchmarks.normalise
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pydantic_core

from benchmarks.__main__ import describe_machine, table
from benchmarks.traffic import stream
from statemachines.envelope import RawEnvelope
from statemachines.normalise import normalise

ROUNDS = 15
SUBJECTS = 600  # per provider: a few thousand envelopes, ~10 ms a pass
REPEAT = 3  # passes over a case per sample, so small event-type groups time above the noise
PROVIDERS = ("idenfy", "ondato", "idwise")

Normaliser = Callable[[RawEnvelope], object]


@dataclass(frozen=True)
class Case:
    name: str
    envelopes: list[RawEnvelope]


def event_type(env: RawEnvelope) -> str:
    """The provider's event name, for grouping (read here, not by the code under test)."""
    header = env.header("idenfy-event-type")
    if header:
        return header
    doc = pydantic_core.from_json(env.body)
    return str(doc.get("event") or doc.get("type") or "?")


def cases() -> list[Case]:
    """Per provider its whole stream, then its envelopes of each event type."""
    built: list[Case] = []
    for provider in PROVIDERS:
        envelopes = stream([provider], SUBJECTS)
        built.append(Case(provider, envelopes))
        groups: dict[str, list[RawEnvelope]] = {}
        for env in envelopes:
            groups.setdefault(event_type(env), []).append(env)
        built += [Case(f"  {name}", group) for name, group in groups.items()]
    return built


def timed_us(run: Normaliser, envelopes: Sequence[RawEnvelope]) -> float:
    """µs per envelope of REPEAT passes of `run` over `envelopes`."""
    start = time.perf_counter_ns()
    for _ in range(REPEAT):
        for env in envelopes:
            run(env)
    return (time.perf_counter_ns() - start) / (REPEAT * len(envelopes)) / 1_000


def parse_only(env: RawEnvelope) -> object:
    return pydantic_core.from_json(env.body, cache_strings=False)  # as `payload` parses


def sample(built: Sequence[Case], runs: Sequence[Normaliser]) -> list[list[list[float]]]:
    """[case][run] -> µs per envelope, one per round; every round runs every pair once."""
    for case in built:  # warm-up
        for run in runs:
            timed_us(run, case.envelopes)
    samples: list[list[list[float]]] = [[[] for _ in runs] for _ in built]
    for _ in range(ROUNDS):
        for case_samples, case in zip(samples, built, strict=True):
            for run_samples, run in zip(case_samples, runs, strict=True):
                run_samples.append(timed_us(run, case.envelopes))
    return samples


def main() -> None:
    print(f"normalise benchmark — {describe_machine()}")
    print(f"µs per envelope: median of {ROUNDS} interleaved rounds (min: fastest round)")
    built = cases()
    gc.collect()
    gc.freeze()  # the pre-built envelopes are no garbage the normaliser should pay to scan
    samples = sample(built, [parse_only, normalise])
    rows = [
        [
            case.name,
            f"{len(case.envelopes):,}",
            f"{statistics.median(parse):.2f}",
            f"{statistics.median(full):.2f}",
            f"{min(full):.2f}",
        ]
        for case, (parse, full) in zip(built, samples, strict=True)
    ]
    print()
    print(table(["workload", "envelopes", "from_json", "normalise", "min"], rows))


if __name__ == "__main__":
    main()
