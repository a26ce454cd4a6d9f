"""One static, table-driven `transitions` machine per subject kind (design.md §4).

Each machine is built once with `model=None` and queried as a table: subjects are plain
data, never attached as models, so 100k subjects cost no machine memory (the library's
FAQ: one machine per model does not scale). A trigger has exactly one destination status;
its sources say from where that status may be reached. `deleted` absorbs everything.

Which event *wins* is decided by precedence (see `precedence.py`); the table decides
whether the winner's change is a legal lifecycle step. The two are kept consistent by
property tests: no valid provider history ever produces an illegal step.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from transitions import Machine

NEW = "new"  # internal start state: the subject exists but no status is known yet


@dataclass(frozen=True)
class Lifecycle:
    kind: str
    statuses: tuple[str, ...]
    triggers: Mapping[str, str]  # status -> trigger that reaches it
    machine: Machine
    steps: Mapping[tuple[str, str], str]  # (source, trigger) -> destination, read off the machine
    tiers: Mapping[str, int]  # status -> precedence tier (ladder kinds; 0 elsewhere)
    absorbing: frozenset[str]
    groups: tuple[tuple[str, tuple[str, ...]], ...] = ()  # named state sets, for diagrams

    def next_status(self, current: str | None, status: str) -> str | None:
        """The destination if `current` may move to `status`, else None."""
        trigger = self.triggers.get(status)
        if trigger is None:
            return None
        return self.steps.get((current or NEW, trigger))

    def table(self) -> list[tuple[str, str, str]]:
        """(source, trigger, destination) rows, in declaration order, for docs and tests."""
        return [(src, trg, dst) for (src, trg), dst in self.steps.items()]


def _build(
    kind: str,
    statuses: Sequence[str],
    triggers: Mapping[str, str],
    sources: Mapping[str, Sequence[str]],
    tiers: Mapping[str, int] | None = None,
    absorbing: Sequence[str] = (),
    groups: Sequence[tuple[str, Sequence[str]]] = (),
) -> Lifecycle:
    rows = [
        {"trigger": triggers[dest], "source": list(sources[dest]), "dest": dest}
        for dest in statuses
    ]
    machine = Machine(
        model=None,
        states=[NEW, *statuses],
        transitions=rows,
        initial=NEW,
        auto_transitions=False,
        ignore_invalid_triggers=False,
    )
    steps = {
        (source, trigger): str(transition.dest)
        for trigger, event in machine.events.items()
        for source, found in event.transitions.items()
        for transition in found
    }
    return Lifecycle(
        kind=kind,
        statuses=tuple(statuses),
        triggers=dict(triggers),
        machine=machine,
        steps=steps,
        tiers=dict(tiers or dict.fromkeys(statuses, 0)),
        absorbing=frozenset(absorbing),
        groups=tuple((name, tuple(members)) for name, members in groups),
    )


def _ladder(
    kind: str,
    tiers: Sequence[Sequence[str]],
    verbs: Mapping[str, str],
    absorbing: Sequence[str] = (),
) -> Lifecycle:
    """A lifecycle that only moves up (or within) its tiers; each tier's statuses may follow
    each other, which is what provider timestamps or arrival order then decide."""
    tier_of = {status: index for index, tier in enumerate(tiers) for status in tier}
    statuses = [status for tier in tiers for status in tier]
    sources = {
        status: [NEW, *(s for s in statuses if tier_of[s] <= tier_of[status])]
        for status in statuses
    }
    groups = [(f"tier{index}", tuple(tier)) for index, tier in enumerate(tiers) if len(tier) > 1]
    return _build(kind, statuses, verbs, sources, tier_of, absorbing, groups)


# --- kyc -------------------------------------------------------------------------------
KYC_OPEN = ("pending", "in_progress", "submitted", "in_review", "resubmission_required")
KYC_DECIDED = ("approved", "rejected", "suspected", "incomplete", "expired", "canceled")
_ANY = (NEW, *KYC_OPEN, *KYC_DECIDED)
_OPEN = (NEW, *KYC_OPEN)

KYC = _build(
    "kyc",
    statuses=KYC_OPEN + KYC_DECIDED,
    triggers={
        "pending": "create",
        "in_progress": "start",
        "submitted": "submit",
        "in_review": "hold_for_review",
        "resubmission_required": "request_resubmission",
        "approved": "approve",
        "rejected": "reject",
        "suspected": "suspect",
        "incomplete": "mark_incomplete",
        "expired": "expire",
        "canceled": "cancel",
    },
    # Once decided, a verification returns to progress statuses only through a new
    # attempt, which begins in_review (iDenfy resubmission) or resubmission_required (IDWise).
    sources={
        "pending": _OPEN,
        "in_progress": _OPEN,
        "submitted": _OPEN,
        "in_review": _ANY,
        "resubmission_required": _ANY,
        "approved": _ANY,
        "rejected": _ANY,
        "suspected": _ANY,
        "incomplete": _ANY,
        "expired": _ANY,
        "canceled": _ANY,
    },
    groups=[("open", KYC_OPEN), ("decided", KYC_DECIDED)],
)

# --- kyb, kyb_document ---------------------------------------------------------------
KYB = _ladder(
    "kyb",
    [("submitted", "info_requested"), ("approved", "rejected"), ("expired",), ("deleted",)],
    {
        "submitted": "submit",
        "info_requested": "request_info",
        "approved": "approve",
        "rejected": "reject",
        "expired": "expire",
        "deleted": "delete",
    },
    absorbing=("deleted",),
)

KYB_DOCUMENT = _ladder(
    "kyb_document",
    [("need_review", "uploaded", "validated", "invalidated"), ("deleted",)],
    {
        "need_review": "create",
        "uploaded": "upload",
        "validated": "validate",
        "invalidated": "invalidate",
        "deleted": "delete",
    },
    absorbing=("deleted",),
)

# --- monitoring and the small lifecycles ----------------------------------------------
AML_MONITORING = _ladder(
    "aml_monitoring",
    [("pending", "active", "alert", "stopped")],
    {"pending": "enrol", "active": "clear", "alert": "raise_alert", "stopped": "stop"},
)

DOCUMENT_EXPIRATION = _ladder(
    "document_expiration",
    [
        ("expires_within_30_days",),
        ("expires_within_7_days",),
        ("expires_within_1_day",),
        ("expired",),
    ],
    {
        "expires_within_30_days": "warn_30_days",
        "expires_within_7_days": "warn_7_days",
        "expires_within_1_day": "warn_1_day",
        "expired": "expire",
    },
)

FACIAL_AUTHENTICATION = _ladder(
    "facial_authentication",
    [("pending",), ("success", "failed", "expired", "canceled")],
    {
        "pending": "begin",
        "success": "succeed",
        "failed": "fail",
        "expired": "expire",
        "canceled": "cancel",
    },
)

_ORDER_TIERS = [("not_ordered",), ("in_progress",), ("finished", "failed", "timed_out")]
_ORDER_VERBS = {
    "not_ordered": "register",
    "in_progress": "order",
    "finished": "deliver",
    "failed": "fail",
    "timed_out": "time_out",
}
GOV_DOCUMENT = _ladder("gov_document", _ORDER_TIERS, _ORDER_VERBS)
SOS_REPORT = _ladder("sos_report", _ORDER_TIERS, _ORDER_VERBS)

ACCOUNT_CHECK = _ladder("account_check", [("completed",)], {"completed": "complete"})
BANK_VERIFICATION = _ladder("bank_verification", [("completed",)], {"completed": "complete"})
BANK_CARD_VERIFICATION = _ladder(
    "bank_card_verification",
    [("not_compared", "match", "no_match")],
    {"not_compared": "skip_comparison", "match": "match", "no_match": "mismatch"},
)
AGE_ESTIMATION = _ladder(
    "age_estimation", [("completed", "failed")], {"completed": "complete", "failed": "fail"}
)
# Account-level notices (iDenfy AML_MONITORING_EXPIRATION names no user): history only.
ACCOUNT_NOTICE = _build("account_notice", [], {}, {})

LIFECYCLES: Mapping[str, Lifecycle] = {
    lc.kind: lc
    for lc in (
        KYC,
        KYB,
        KYB_DOCUMENT,
        AML_MONITORING,
        DOCUMENT_EXPIRATION,
        FACIAL_AUTHENTICATION,
        GOV_DOCUMENT,
        SOS_REPORT,
        ACCOUNT_CHECK,
        BANK_VERIFICATION,
        BANK_CARD_VERIFICATION,
        AGE_ESTIMATION,
        ACCOUNT_NOTICE,
    )
}
KINDS = tuple(LIFECYCLES)


def lifecycle(kind: str) -> Lifecycle:
    return LIFECYCLES[kind]
