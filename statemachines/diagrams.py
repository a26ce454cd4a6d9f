"""Mermaid state diagrams drawn from the lifecycle tables (pure text, no I/O).

Sources are compressed into the lifecycle's named groups where a group is wholly a
source, so a diagram shows the rule ("from any decided state") rather than 100 arrows.
"""

from __future__ import annotations

from statemachines.machines import NEW, Lifecycle


def mermaid(cycle: Lifecycle) -> str:
    lines = ["stateDiagram-v2"]
    for name, members in cycle.groups:
        lines.append(f"    state {name} {{")
        lines.extend(f"        {member}" for member in members)
        lines.append("    }")
    for status in cycle.statuses:
        trigger = cycle.triggers[status]
        sources = {src for (src, trg), dst in cycle.steps.items() if trg == trigger}
        for source in _cover(cycle, sources):
            start = "[*]" if source == NEW else source
            lines.append(f"    {start} --> {status} : {trigger}")
    for status in sorted(cycle.absorbing):
        lines.append(f"    {status} --> [*]")
    return "\n".join(lines)


def _cover(cycle: Lifecycle, sources: set[str]) -> list[str]:
    """Group names that lie wholly inside `sources`, then the states left over."""
    covered: list[str] = []
    remaining = set(sources)
    for name, members in cycle.groups:
        if set(members) <= remaining:
            covered.append(name)
            remaining -= set(members)
    order = [NEW, *cycle.statuses]
    return covered + [state for state in order if state in remaining]
