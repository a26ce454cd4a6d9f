"""Forgetting a person: erasure of subjects and retention of raw bodies, in both modes.

docs/personal-data.md is the contract. Both modes do the same three things, atomically
where the store allows: reduce each delivery of the subject to the canonical event it had
become (`statemachines.normalise.reduced_form`), destroy the subject's data keys, append an
erasure record (`statemachines.reduced.erase_record`) that the fold applies in log order.

- `streams.erasure.embedded`: the SQLite raw log (one transaction).
- `streams.erasure.kafka`: the raw, keys and reduced topics.
- `streams.erasure.retention`: the policy (KYCFLOW_RETENTION) and which subjects it reaches.
"""

from __future__ import annotations

from dataclasses import dataclass

from statemachines.envelope import RawEnvelope
from statemachines.reduced import erase_record


class UnknownSubject(LookupError):
    """No delivery of this subject (or this reference) is known: a 404, exit status 1."""


@dataclass(frozen=True)
class Request:
    """One erasure: subject keys (provider/kind/id), already resolved from a reference."""

    subjects: tuple[str, ...]
    scope: str = "personal"  # statemachines.reduced.SCOPES
    keep_reference: bool = False
    by: str = "cli"  # "cli", "api:<token fingerprint>", "retention" — never personal data


@dataclass(frozen=True)
class Erased:
    """What one subject's erasure did (JSON-safe, for the CLI, the API and the audit)."""

    subject: str
    erased_at: str
    deliveries: int  # deliveries reduced (their events kept)
    dropped: int  # quarantined deliveries that named the subject, reduced to nothing
    keys: int  # data keys destroyed


def record_of(
    request: Request,
    subject: str,
    received_at: str,
    *,
    dropped: tuple[int, ...],
    wiped: tuple[int, ...],
) -> RawEnvelope:
    """The erasure record of `subject` that `request` asks for (both modes append it)."""
    return erase_record(
        subject,
        scope=request.scope,
        keep_reference=request.keep_reference,
        by=request.by,
        received_at=received_at,
        dropped=dropped,
        wiped=wiped,
    )
