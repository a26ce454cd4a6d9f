"""`make demo`: a live kycflow with simulated traffic, for someone trying it out.

Starts `kycflow serve` (first run generates credentials), waits until it answers, sends
realistic signed traffic for all three providers with reordering and duplicates, prints
where to look, and keeps serving until Ctrl-C.
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


def wait_until_up(url: str, server: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and server.poll() is None:
        try:
            urllib.request.urlopen(url + "/healthz", timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("kycflow serve did not come up; see its output above")


def main() -> int:
    config = load_config(os.environ)
    url = f"http://{config.get('KYCFLOW_HOST', '127.0.0.1')}:{config.get('KYCFLOW_PORT', '8080')}"
    server = subprocess.Popen([KYCFLOW, "serve"])
    try:
        wait_until_up(url, server)
        subprocess.run(
            [
                KYCFLOW,
                "simulate",
                "--url",
                url,
                "--verifications",
                "200",
                "--reorder",
                "--duplicates",
            ],
            check=False,
        )
        print(
            f"\nkycflow is live on {url} (database {db_path(os.environ)}). Try:\n"
            f"  curl -s '{url}/verifications?limit=5'\n"
            f"  curl -sN {url}/feed\n"
            f"  curl -s {url}/metrics\n"
            f"  .venv/bin/kycflow inspect idwise kyc <id from the listing>\n"
            "Ctrl-C stops it."
        )
        return server.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
