"""Memory per subject with many subjects held, and the stored size of one state.

MEMORY_SUBJECTS distinct kyc subjects are each folded with three events (preliminary
result, manual decision, a duplicate delivery of the decision) and their states held in a
dict keyed by subject key; tracemalloc reports the increase. Envelopes are built and
dropped per subject, so only the states, their keys and the dict remain.
"""

from __future__ import annotations

import gc
import json
import random
import statistics
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass

from benchmarks.traffic import SEED, History, ondato_created, received_at, subject_id
from statemachines import codec
from statemachines.fold import SubjectState
from statemachines.process import step
from tests import payloads
from tests.payloads import Webhook

MEMORY_SUBJECTS = 100_000
TARGET_BYTES_PER_SUBJECT = 2_048


SUBJECT_SLOT = "11111111-1111-4111-8111-111111111111"  # replaced by each subject's id
EVENT_SLOT = "22222222-2222-4222-8222-222222222222"  # replaced by each delivery's id


def memory_templates() -> dict[str, tuple[Webhook, Webhook]]:
    """Per provider, a preliminary result and a manual approval, with slots for the ids.

    Bodies are the plain `tests.payloads` ones: padding does not change what a state holds.
    """
    s, e = SUBJECT_SLOT, EVENT_SLOT
    return {
        "idenfy": (
            payloads.idenfy_identification("IDENTIFICATION_AUTO_FINISHED", s, final=False),
            payloads.idenfy_identification("IDENTIFICATION_MANUAL_FINISHED", s, manual=True),
        ),
        "ondato": (
            payloads.ondato_kyc("Processed", s, webhook_id=e, created=ondato_created(3)),
            payloads.ondato_kyc(
                "Approved", s, reason="Manually approved", webhook_id=e, created=ondato_created(9)
            ),
        ),
        "idwise": (
            payloads.idwise("Finished Journey", event_id=e, journey=s, systemDecision="Refer"),
            payloads.idwise(
                "Manually Reviewed",
                event_id=e,
                journey=s,
                finalDecision="Approved",
                manualDecision="Approved",
            ),
        ),
    }


def fill(template: Webhook, subject: str, rng: random.Random) -> Webhook:
    provider, headers, body = template
    body = body.replace(SUBJECT_SLOT.encode(), subject.encode())
    return provider, headers, body.replace(EVENT_SLOT.encode(), subject_id(rng).encode())


def subject_webhooks(templates: tuple[Webhook, Webhook], rng: random.Random) -> History:
    """Preliminary result, manual decision, and a duplicate delivery of the decision."""
    subject = subject_id(rng)
    decision = fill(templates[1], subject, rng)
    return [fill(templates[0], subject, rng), decision, decision]


def hold_states(subjects: int, offset: int = 0) -> dict[str, SubjectState]:
    """Fold `subjects` subjects, providers in turn; envelopes are dropped once folded."""
    rng = random.Random(SEED + offset)
    templates = list(memory_templates().values())
    states: dict[str, SubjectState] = {}
    for index in range(subjects):
        for webhook in subject_webhooks(templates[index % len(templates)], rng):
            env = payloads.deliver(webhook, offset, received_at(offset))
            offset += 1
            result = step(env, states)
            if result.outcome is not None:
                states[result.outcome.state.subject.key] = result.outcome.state
    return states


def traced_bytes(
    build: Callable[[], dict[str, SubjectState]],
) -> tuple[int, dict[str, SubjectState]]:
    """Increase of traced memory while `build` runs and its result is held."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    held = build()
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return after - before, held


def json_size(state: SubjectState) -> int:
    """Bytes of the state as a Faust table value or SQLite row would store it."""
    return len(json.dumps(codec.state_to_dict(state), separators=(",", ":")))


@dataclass(frozen=True)
class MemoryRow:
    label: str
    subjects: int
    held_bytes: int | None  # None: not traced separately (per-provider rows)
    json_bytes: float

    def cells(self) -> list[str]:
        if self.held_bytes is None:
            return [self.label, f"{self.subjects:,}", "", "", f"{self.json_bytes:,.0f}", "", ""]
        per_subject = self.held_bytes / self.subjects
        met = per_subject <= TARGET_BYTES_PER_SUBJECT
        return [
            self.label,
            f"{self.subjects:,}",
            f"{self.held_bytes / 2**20:.1f}",
            f"{per_subject:,.0f}",
            f"{self.json_bytes:,.0f}",
            f"<= {TARGET_BYTES_PER_SUBJECT:,} B",
            "yes" if met else "NO",
        ]


MEMORY_HEADERS = [
    "kyc subjects (3 events each)",
    "held",
    "traced MiB",
    "B/subject",
    "state JSON B",
    "target",
    "met?",
]


def measure_memory(subjects: int = MEMORY_SUBJECTS) -> list[MemoryRow]:
    hold_states(300, offset=10**9)  # warm-up: fill caches outside the trace
    held, states = traced_bytes(lambda: hold_states(subjects))
    sizes: dict[str, list[int]] = {}
    for state in states.values():
        sizes.setdefault(state.subject.provider, []).append(json_size(state))
    every = [size for group in sizes.values() for size in group]
    rows = [MemoryRow("all providers in turn", len(states), held, statistics.fmean(every))]
    rows += [
        MemoryRow(f"  of which {provider}", len(group), None, statistics.fmean(group))
        for provider, group in sizes.items()
    ]
    return rows
