"""Steady, bounded demo traffic for the docker-compose stack (stdlib only).

TRAFFIC_TARGET      base URL                      (default http://app:8000)
TRAFFIC_PATHS       comma-separated paths         (default: routes of examples/starlette_app.py, a 500 and a 404)
TRAFFIC_RPS         requests per second           (default 2)
TRAFFIC_DURATION_S  stop after this many seconds  (default 3600)
"""

from __future__ import annotations

import itertools
import os
import time
import urllib.error
import urllib.request


def main() -> None:
    target = os.environ.get("TRAFFIC_TARGET", "http://app:8000").rstrip("/")
    if not target.startswith(("http://", "https://")):
        raise SystemExit(f"TRAFFIC_TARGET={target!r} is not an http(s) URL")
    paths = os.environ.get("TRAFFIC_PATHS", "/items/1,/items/42,/v1/items/7,/fail,/does-not-exist").split(",")
    rps = float(os.environ.get("TRAFFIC_RPS", "2"))
    deadline = time.monotonic() + float(os.environ.get("TRAFFIC_DURATION_S", "3600"))
    counts: dict[int, int] = {}
    # Round-robin: every route gets the same share, run after run.
    for path in itertools.cycle(paths):
        if time.monotonic() >= deadline:
            break
        try:
            with urllib.request.urlopen(f"{target}{path}", timeout=5) as response:  # noqa: S310 (scheme checked)
                status = response.status
        except urllib.error.HTTPError as exc:  # 4xx/5xx are traffic too
            status = exc.code
        except OSError:
            status = 0  # app restarting; keep going
        counts[status] = counts.get(status, 0) + 1
        if sum(counts.values()) % 100 == 0:
            print(f"traffic: {counts}", flush=True)
        time.sleep(1 / rps)
    print(f"traffic: done {counts}", flush=True)


if __name__ == "__main__":
    main()
