"""CPU time per process role, read from /proc (Linux), for µs per acknowledged webhook.

A process's utime+stime in /proc/<pid>/stat covers all its threads. Each role's processes
are found from the pid the benchmark started, through /proc/<pid>/task/*/children; a
child's own descendants count towards its role.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Callable, Mapping
from pathlib import Path

TICK = 1_000_000 / os.sysconf("SC_CLK_TCK")  # µs per clock tick
Roles = dict[str, list[int]]  # role -> pids, each counted with its descendants
Ticks = dict[str, int]


def _stat(pid: int) -> list[str]:
    """The fields after `(comm)`: fields[0] is state (field 3 in proc(5))."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(p) for p in (task / "children").read_text().split()]
    return found


def _descendants(pid: int) -> list[int]:
    pids = [pid]
    for child in children(pid):
        pids += _descendants(child)
    return pids


def ticks(pid: int) -> int:
    """utime + stime of the process and its live descendants, in clock ticks."""
    total = 0
    for each in _descendants(pid):
        try:
            fields = _stat(each)
        except FileNotFoundError:
            continue  # exited between the listing and the read
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total


def serve_roles(supervisor: int) -> Roles:
    """`kycflow serve`'s processes. The processor is the child at niceness 19 (it lowers
    itself); the writer is the first child started (the supervisor waits for its socket
    before forking the rest); the other children are HTTP workers. In Kafka mode every
    child is an HTTP worker."""
    kids = children(supervisor)
    processor = [pid for pid in kids if int(_stat(pid)[16]) == 19]  # nice: field 19
    others = sorted(set(kids) - set(processor), key=lambda pid: (int(_stat(pid)[19]), pid))
    roles: Roles = {"supervisor": [supervisor]}
    if processor:  # embedded mode
        roles |= {"writer": others[:1], "processor": processor, "http": others[1:]}
    else:
        roles["http"] = others
    return roles


def bare_roles(parent: int) -> Roles:
    return {"supervisor": [parent], "http": children(parent)}


def single_roles(pid: int) -> Roles:
    return {"http": [pid]}


def snapshot(roles: Roles) -> Ticks:
    """Each role's CPU ticks so far. A supervisor's children belong to their own roles."""
    counted = {pid for pids in roles.values() for pid in pids}
    result: Ticks = {}
    for role, pids in roles.items():
        total = 0
        for pid in pids:
            # The supervisor alone: its children are counted under their roles.
            total += _own_ticks(pid) if set(children(pid)) & counted else ticks(pid)
        result[role] = total
    return result


def _own_ticks(pid: int) -> int:
    fields = _stat(pid)
    return int(fields[11]) + int(fields[12])


def per_webhook(before: Ticks, after: Mapping[str, int], acknowledged: int) -> dict[str, float]:
    """µs of CPU per acknowledged webhook, by role, and their total."""
    if acknowledged <= 0:
        return {}
    spent = {role: (after[role] - before[role]) * TICK / acknowledged for role in before}
    return spent | {"total": sum(spent.values())}


RoleFinder = Callable[[int], Roles]


def machine_busy() -> int:
    """Ticks all cores spent running anything (not idle or waiting on I/O), from /proc/stat."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = (
        Path("/proc/stat").read_text().split(maxsplit=9)[1:9]
    )
    return sum(int(n) for n in (user, nice, system, irq, softirq, steal))


def children_ticks() -> float:
    """CPU of this process's reaped children (wrk runs), in ticks."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (used.ru_utime + used.ru_stime) * 1_000_000 / TICK
