"""The lifecycle tables: what they allow, what they forbid, and their diagrams."""

from __future__ import annotations

import pytest

from scripts import diagrams
from statemachines.diagrams import mermaid
from statemachines.machines import KYC, KYC_DECIDED, LIFECYCLES, NEW, lifecycle


@pytest.mark.parametrize("kind", sorted(LIFECYCLES))
def test_every_status_is_reachable_from_a_new_subject(kind: str) -> None:
    cycle = lifecycle(kind)
    for status in cycle.statuses:
        assert cycle.next_status(None, status) == status


@pytest.mark.parametrize("kind", sorted(LIFECYCLES))
def test_the_machine_is_static_and_holds_no_subjects(kind: str) -> None:
    machine = lifecycle(kind).machine
    assert machine.models == []
    assert not machine.auto_transitions


@pytest.mark.parametrize("kind", ["kyb", "kyb_document"])
def test_deleted_absorbs_every_other_status(kind: str) -> None:
    cycle = lifecycle(kind)
    for status in cycle.statuses:
        expected = "deleted" if status == "deleted" else None
        assert cycle.next_status("deleted", status) == expected


@pytest.mark.parametrize("decided", KYC_DECIDED)
@pytest.mark.parametrize("progress", ["pending", "in_progress", "submitted"])
def test_a_decided_kyc_never_returns_to_a_progress_status(decided: str, progress: str) -> None:
    assert KYC.next_status(decided, progress) is None


@pytest.mark.parametrize("decided", KYC_DECIDED)
def test_a_decided_kyc_may_open_a_new_attempt(decided: str) -> None:
    assert KYC.next_status(decided, "in_review") == "in_review"
    assert KYC.next_status(decided, "resubmission_required") == "resubmission_required"


def test_kyb_never_moves_back_a_tier() -> None:
    kyb = lifecycle("kyb")
    assert kyb.next_status("approved", "submitted") is None
    assert kyb.next_status("expired", "approved") is None
    assert kyb.next_status("submitted", "info_requested") == "info_requested"
    assert kyb.next_status("info_requested", "submitted") == "submitted"


def test_unknown_status_has_no_step() -> None:
    assert KYC.next_status(NEW, "teleported") is None


def test_diagram_shows_every_trigger_of_the_table() -> None:
    text = mermaid(KYC)
    for trigger in set(KYC.triggers.values()):
        assert f": {trigger}" in text
    assert "decided --> in_review : hold_for_review" in text
    assert "decided --> pending" not in text


def test_diagram_check_detects_a_stale_page(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    readme = tmp_path / "order-independence.md"
    readme.write_text(f"intro\n{diagrams.BEGIN}\nold\n{diagrams.END}\ntail\n")
    monkeypatch.setattr(diagrams, "PAGE", readme)
    assert diagrams.main(["--check"]) == 1
    assert diagrams.main([]) == 0
    assert diagrams.main(["--check"]) == 0
    assert readme.read_text().startswith("intro\n") and readme.read_text().endswith("tail\n")
