"""Where `kycflow serve` spends its CPU under the ingest benchmark's load: a sampling profile.

Starts `kycflow serve` (with KYCFLOW_BENCH_VARIANTS' first variant, if set), loads it with
`wrk -t1 -c64` and the IDWise script, and after the warm-up samples one HTTP worker and the
processor at once with py-spy (not a dependency: `.venv/bin/pip install py-spy`). Prints,
per process, the functions with the largest share of samples: inclusive (the function or
what it calls) and self (the function's own code). Percentages are of the samples in which
the process was running Python, not waiting in the event loop.

    python -m benchmarks.profile [SECONDS]     (collapsed stacks are kept; path printed)
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from benchmarks import cpu, ingest
from benchmarks.__main__ import table
from benchmarks.load import LUA, TOKEN, WARMUP, serving, wrk

PORT = 18720
_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>.*?)(?::\d+)?\)$")


def record(pid: int, seconds: int, out: Path) -> subprocess.Popen[bytes]:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    command = [spy, "record", "-p", str(pid), "-d", str(seconds), "-r", "200"]
    command += ["--format", "raw", "-o", str(out)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _name(frame: str) -> str:
    found = _FRAME.match(frame)
    if found is None:
        return frame
    path = found["file"]
    for marker in ("site-packages/", "/work/main/", "python3.11/"):
        path = path.split(marker)[-1]
    return f"{found['function']} ({path})"


def shares(collapsed: str) -> tuple[Counter[str], Counter[str], int]:
    """Inclusive and self samples per function from py-spy's collapsed stacks."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        frames = [_name(frame) for frame in stack.split(";")]
        samples = int(count)
        total += samples
        inclusive.update(dict.fromkeys(set(frames), samples))
        own[frames[-1]] += samples
    return inclusive, own, total


def top(collapsed: str, count: int = 20) -> str:
    inclusive, own, total = shares(collapsed)
    if total == 0:
        return "(no samples)"
    # Frames in every sample (process start-up, the event loop's run) say nothing.
    below = [(name, n) for name, n in inclusive.most_common() if n < total][:count]
    rows = [[name, f"{n / total:.1%}", f"{own[name] / total:.1%}"] for name, n in below]
    selfish = [[name, f"{n / total:.1%}"] for name, n in own.most_common(count)]
    return "\n\n".join(
        [
            table(["function (inclusive)", "incl.", "self"], rows),
            table(["function (self)", "self"], selfish),
            f"({total:,} samples with Python running)",
        ]
    )


def main(seconds: int) -> None:
    out = Path(tempfile.mkdtemp(prefix="kycflow-profile-"))
    extra = next(iter(ingest.variants().values()))
    env = {**ingest.serve_env(out / "profile.db", PORT), **extra}
    kycflow = [str(Path(sys.executable).parent / "kycflow"), "serve"]
    with serving(kycflow, env, PORT) as server:
        roles = cpu.serve_roles(server.pid)
        wrk(server.url, WARMUP)
        load = subprocess.Popen(
            ["wrk", "-t1", "-c64", f"-d{seconds + 2}s", "-s", str(LUA), server.url],
            env={**os.environ, "KYCFLOW_IDWISE_TOKEN": TOKEN},
            stdout=subprocess.DEVNULL,
        )
        targets = {"HTTP worker": roles["http"][0], "processor": roles["processor"][0]}
        spies = {role: record(pid, seconds, out / f"{role}.txt") for role, pid in targets.items()}
        for role, spy in spies.items():
            _, errors = spy.communicate()
            if spy.returncode != 0:
                raise SystemExit(f"py-spy failed on the {role}: {errors.decode()}")
        load.wait()
    for role in spies:
        print(f"== {role} under wrk -c64 ==\n{top((out / f'{role}.txt').read_text())}\n")
    print(f"collapsed stacks in {out} (flamegraph: py-spy record -o out.svg -p PID)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 8)
