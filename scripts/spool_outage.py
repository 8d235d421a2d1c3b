"""By hand: a collector outage under steady load, and what arrived (docs/spool.md, issue 17's figures).

    .venv/bin/python scripts/spool_outage.py RATE BEFORE_S OUTAGE_S AFTER_S [SPOOL_DIR]
    .venv/bin/python scripts/spool_outage.py 300 10 60 10

A uvicorn app under the kit exports to a real OTLP receiver, which is stopped
for OUTAGE_S seconds while RATE requests per second keep coming, then
restarted on the same port. Prints the requests answered, the spans and
handler logs that arrived (and whether any arrived twice), client-side p99
before/after versus during the outage, the server's RSS growth and the
spool's peak disk use.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.load import SteadyLoad, p99
from tests.support.servers import kit_env, run_server
from tests.test_spool_server import APP, receivers

WARM_UP = 200


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    return float("nan")


def disk_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6 if path.exists() else 0.0


def main() -> None:
    rate, before, outage, after = (float(a) for a in sys.argv[1:5])
    spool = Path(sys.argv[5] if len(sys.argv) > 5 else "/tmp/otel-asgi-kit-outage-spool")
    shutil.rmtree(spool, ignore_errors=True)
    with receivers() as rx:
        rx.up()
        env = kit_env(rx.endpoint, OTEL_ASGI_KIT_SPOOL_DIR=str(spool))
        for name in ("OTEL_BSP_SCHEDULE_DELAY", "OTEL_BLRP_SCHEDULE_DELAY"):
            env.pop(name)  # the SDK's default batching, as in production
        with run_server("uvicorn", APP, env) as srv:
            pid = srv.process.pid
            for i in range(WARM_UP):
                httpx.get(f"{srv.base_url}/items/{i}")
            rss0 = rss_mb(pid)
            load = SteadyLoad(srv.base_url + "/items/{}", rate=rate, duration=before + outage + after).start()
            t0 = time.monotonic()
            time.sleep(before)
            rx.down()
            t_down = time.monotonic()
            peak_rss, peak_disk = rss0, 0.0
            while time.monotonic() - t_down < outage:
                time.sleep(1)
                peak_rss, peak_disk = max(peak_rss, rss_mb(pid)), max(peak_disk, disk_mb(spool))
            rx.up()
            t_up = time.monotonic()
            samples = load.join()
            ok = [s for s in samples if s.status == 200]
            print(f"requests {len(samples)}, answered 200: {len(ok)}; load took {time.monotonic() - t0:.1f}s")
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                peak_rss = max(peak_rss, rss_mb(pid))
                if min(len(rx.item_spans()), len(rx.handler_logs())) >= len(ok) + WARM_UP:
                    break
                time.sleep(0.5)
            waited = time.monotonic() - t_up
            spans = rx.item_spans()
            delivered = len({s.trace_id for s in ok} & rx.item_traces())
            print(f"spans of those requests delivered: {delivered}/{len(ok)} ({waited:.1f}s after the return)")
            print(f"span records {len(spans)} (unique {len(set(spans))}), handler logs {len(rx.handler_logs())}")
            normal = [s for s in samples if s.started < t_down or s.started > t_up + 15]
            away = [s for s in samples if t_down <= s.started < t_up]
            print(f"p99 normal {p99(normal) * 1000:.1f} ms ({len(normal)}), outage {p99(away) * 1000:.1f} ms")
            print(f"RSS {rss0:.1f} -> peak {peak_rss:.1f} MB (+{peak_rss - rss0:.1f}); spool peak {peak_disk:.1f} MB")
            print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
