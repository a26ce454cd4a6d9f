"""The README and docs/: short README, no broken or orphan pages, every setting documented.

Links are checked the way GitHub renders them: a relative path must exist, and a `#anchor`
must name a heading of the target page (GitHub's slug: lower case, punctuation dropped,
spaces to hyphens, repeats numbered).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from scripts import diagrams

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]
MAX_README_LINES = 200

_FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*$", re.MULTILINE)
_SETTING = re.compile(r"\bKYCFLOW_[A-Z0-9_]*[A-Z0-9]\b")


def _prose(text: str) -> str:
    """The text without fenced code blocks (their brackets are not links)."""
    return _FENCE.sub("", text)


def slugs(text: str) -> set[str]:
    found: set[str] = set()
    seen: Counter[str] = Counter()
    for heading in _HEADING.findall(_prose(text)):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        found.add(slug if not seen[slug] else f"{slug}-{seen[slug]}")
        seen[slug] += 1
    return found


def links(page: Path) -> list[str]:
    return _LINK.findall(_prose(page.read_text(encoding="utf-8")))


def broken_links(page: Path) -> list[str]:
    broken = []
    for target in links(page):
        if re.match(r"[a-z]+:", target):  # https:, mailto: — not ours to check
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists() or (anchor and anchor not in _anchors(resolved)):
            broken.append(target)
    return broken


def _anchors(page: Path) -> set[str]:
    return slugs(page.read_text(encoding="utf-8")) if page.suffix == ".md" else set()


def test_readme_is_short() -> None:
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines; move reference to docs/"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    assert broken_links(page) == []


def test_the_link_check_catches_a_missing_page_and_anchor(tmp_path: Path) -> None:
    (tmp_path / "there.md").write_text("# Title\n\n## A `code` heading, twice\n")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](there.md#a-code-heading-twice) [gone](missing.md) [bad](there.md#nope)\n"
        "```\n[not a link](nowhere.md)\n```\n"
    )
    assert broken_links(page) == ["missing.md", "there.md#nope"]


def test_every_docs_page_is_linked_from_the_readme() -> None:
    linked = {(ROOT / target.partition("#")[0]).resolve() for target in links(README)}
    orphans = [p.name for p in DOCS.glob("*.md") if p.resolve() not in linked]
    assert orphans == []


def test_docs_never_point_at_private_references() -> None:
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for private in ("design.md", "providers.md", "shared/"):
            assert private not in text, f"{page.name} mentions {private}"


def test_every_setting_the_code_reads_is_documented() -> None:
    documented = set(_SETTING.findall((DOCS / "configuration.md").read_text(encoding="utf-8")))
    used: set[str] = set()
    for package in ("ingest", "projections", "statemachines", "streams", "benchmarks"):
        for source in (ROOT / package).rglob("*.py"):
            used |= set(_SETTING.findall(source.read_text(encoding="utf-8")))
    assert sorted(used - documented) == []


def test_diagram_check_fails_when_a_lifecycle_table_changes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    page = tmp_path / "order-independence.md"
    page.write_text(diagrams.PAGE.read_text(encoding="utf-8"), encoding="utf-8")
    monkeypatch.setattr(diagrams, "PAGE", page)
    assert diagrams.main(["--check"]) == 0  # the committed page is current
    fewer = dict(list(diagrams.LIFECYCLES.items())[1:])
    monkeypatch.setattr(diagrams, "LIFECYCLES", fewer)
    assert diagrams.main(["--check"]) == 1


def test_diagram_check_fails_without_its_markers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    page = tmp_path / "order-independence.md"
    page.write_text("# a page whose diagrams were deleted\n", encoding="utf-8")
    monkeypatch.setattr(diagrams, "PAGE", page)
    assert diagrams.main(["--check"]) == 1
    monkeypatch.setattr(diagrams, "PAGE", tmp_path / "moved-away.md")
    assert diagrams.main(["--check"]) == 1
