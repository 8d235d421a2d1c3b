"""Idle CPU cost of the event-loop lag sampler and blocked-loop watchdog.

Runs an idle event loop for --seconds without and then with loop health (lag
histogram + watchdog at the default 100 ms threshold, real SDK meter provider)
and prints the process CPU time each used, as a percentage of one core:

    python benchmarks/loop_health_idle.py --seconds 20 --loop both
"""

from __future__ import annotations

import argparse
import asyncio
import os
import threading
import time
from collections.abc import Callable

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from otel_asgi_kit.loop_health import LoopHealth


def _thread_cpu(native_id: int) -> float:
    """CPU seconds of one thread of this process, from /proc (clock-tick resolution)."""
    try:
        with open(f"/proc/self/task/{native_id}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _idle(
    factory: Callable[[], asyncio.AbstractEventLoop], seconds: float, health: LoopHealth | None
) -> tuple[float, float]:
    loop = factory()

    async def main() -> tuple[float, float]:
        if health is not None:
            health.ensure()
        await asyncio.sleep(0.2)  # let the monitor start
        threads = [t for t in threading.enumerate() if t.name == "otel-asgi-kit-loop-watchdog"]
        watchdog_before = sum(_thread_cpu(t.native_id or 0) for t in threads)
        cpu = time.process_time()
        await asyncio.sleep(seconds)
        used = time.process_time() - cpu
        watchdog = sum(_thread_cpu(t.native_id or 0) for t in threads) - watchdog_before
        return used, watchdog

    try:
        return loop.run_until_complete(main())
    finally:
        if health is not None:
            health.shutdown()
        loop.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--loop", choices=["asyncio", "uvloop", "both"], default="both")
    parser.add_argument("--threshold-ms", type=int, default=100)
    args = parser.parse_args()
    factories: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {"asyncio": asyncio.new_event_loop}
    if args.loop in ("uvloop", "both"):
        import uvloop

        factories["uvloop"] = uvloop.new_event_loop
        if args.loop == "uvloop":
            del factories["asyncio"]
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("bench")
    for name, factory in factories.items():
        base, _ = _idle(factory, args.seconds, None)
        health = LoopHealth(meter, blocked_threshold_s=args.threshold_ms / 1000)
        watched, watchdog = _idle(factory, args.seconds, health)
        print(
            f"{name:8s} idle {args.seconds:.0f} s: without {base / args.seconds * 100:.3f}% CPU, "
            f"with lag{' + watchdog' if health.threshold > 0 else ''} (heartbeat {health.period * 1000:.0f} ms) "
            f"{watched / args.seconds * 100:.3f}% "
            f"-> overhead {(watched - base) / args.seconds * 100:.3f}% of one core "
            f"(watchdog thread {watchdog / args.seconds * 100:.3f}%)"
        )


if __name__ == "__main__":
    main()
