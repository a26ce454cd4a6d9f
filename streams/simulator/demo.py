"""`make demo`: a live kycflow with simulated traffic, for someone trying it out.

Starts `kycflow serve` (first run generates credentials), waits until it answers, sends
realistic signed traffic for all three providers with reordering and duplicates, prints
where to look, and keeps serving until Ctrl-C. When a kycflow service already answers on
the configured address (`make run` in another terminal), the traffic goes to it instead:
a second service on the same database or port would be refused.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from streams.config import db_path, load_config

KYCFLOW = str(Path(sys.executable).parent / "kycflow")


def answering(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def wait_until_up(url: str, server: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and server.poll() is None:
        if answering(url):
            return
        time.sleep(0.2)
    raise SystemExit("kycflow serve did not come up; see its output above")


def main() -> int:
    config = load_config(os.environ)
    url = f"http://{config.get('KYCFLOW_HOST', '127.0.0.1')}:{config.get('KYCFLOW_PORT', '8080')}"
    if answering(url):
        print(f"kycflow already answers on {url}: sending the demo traffic to it.")
        send_traffic(url)
        print(where_to_look(url, "it keeps running in its own terminal."))
        return 0
    server = subprocess.Popen([KYCFLOW, "serve"])
    try:
        wait_until_up(url, server)
        send_traffic(url)
        print(where_to_look(url, "Ctrl-C stops it."))
        return server.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait(timeout=30)


def send_traffic(url: str) -> None:
    command = [KYCFLOW, "simulate", "--url", url, "--verifications", "200"]
    subprocess.run([*command, "--reorder", "--duplicates"], check=False)


def where_to_look(url: str, stopping: str) -> str:
    return (
        f"\nkycflow is live on {url} (database {db_path(os.environ)}). Try:\n"
        f"  curl -s '{url}/verifications?limit=5&order=newest'\n"
        f"  curl -sN {url}/feed\n"
        f"  curl -s {url}/metrics\n"
        f"  .venv/bin/kycflow inspect idwise kyc <id from the listing>\n"
        f"{stopping}"
    )


if __name__ == "__main__":
    sys.exit(main())
