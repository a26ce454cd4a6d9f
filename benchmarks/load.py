"""What the service benchmarks share: `wrk` runs and the servers they load.

`wrk` (one thread, a separate C process) posts unique IDWise webhooks with the project's
script (benchmarks/wrk/idwise.lua); servers run in their own session so that stopping one
stops all its processes.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

DURATION = int(os.environ.get("KYCFLOW_BENCH_SECONDS", "10"))
WARMUP = 2  # seconds of the same load before each measured run, unreported
TOKEN = "bench-token"
LUA = Path(__file__).parent / "wrk" / "idwise.lua"
# Webhooks per IDWise journey (read by the script too): 1, the default, makes every webhook
# a new subject — encryption at rest's worst case, a new data key each; 4 is a real journey.
EVENTS_PER_JOURNEY = int(os.environ.get("KYCFLOW_BENCH_EVENTS_PER_JOURNEY", "1"))


@dataclass
class Load:
    rate: float
    p50_ms: float
    p99_ms: float
    errors: int  # non-2xx answers plus socket errors
    requests: int = 0  # answered requests, errors included

    @property
    def acknowledged(self) -> int:
        return max(self.requests - self.errors, 0)


def wrk(url: str, seconds: int, connections: int = 64) -> Load:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed for the ingest benchmark: apt-get install wrk")
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(LUA), url],
        env={**os.environ, "KYCFLOW_IDWISE_TOKEN": TOKEN},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return parse_wrk(out)


def parse_wrk(out: str) -> Load:
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    return Load(
        rate=float(_find(r"Requests/sec:\s+([\d.]+)", out)),
        p50_ms=_millis(_find(r"50%\s+([\d.]+\w+)", out)),
        p99_ms=_millis(_find(r"99%\s+([\d.]+\w+)", out)),
        errors=(int(non_2xx.group(1)) if non_2xx else 0)
        + (sum(int(n) for n in sockets.groups()) if sockets else 0),
        requests=int(_find(r"(\d+) requests in", out)),
    )


def _find(pattern: str, text: str) -> str:
    found = re.search(pattern, text)
    if found is None:
        raise RuntimeError(f"unexpected wrk output (no {pattern!r}):\n{text}")
    return found.group(1)


def _millis(text: str) -> float:
    value, unit = float(_find(r"([\d.]+)", text)), re.sub(r"[\d.]", "", text)
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


@dataclass(frozen=True)
class Server:
    url: str
    pid: int  # the process started: a supervisor whose children do the work, or the server


@contextlib.contextmanager
def serving(command: list[str], env: dict[str, str], port: int) -> Iterator[Server]:
    process = subprocess.Popen(
        command,
        env={**os.environ, **env},
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_listening(url, process)
        yield Server(url, process.pid)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


@contextlib.contextmanager
def running(command: list[str], env: dict[str, str], port: int) -> Iterator[str]:
    with serving(command, env, port) as server:
        yield server.url


def _wait_listening(url: str, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        try:
            urllib.request.urlopen(url + "/healthz", timeout=1).close()
            return
        except urllib.error.HTTPError:
            return  # something answers (the baselines have no /healthz)
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening at {url}")


def metric(url: str, name: str) -> float:
    text = urllib.request.urlopen(url + "/metrics", timeout=5).read().decode()
    found = re.search(rf"^{re.escape(name)} ([\d.e+-]+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0
