"""Rate limits under concurrency and their cost per request: DRF's SimpleRateThrottle against ours, same run.

- Flood: 8 threads of one client send 10 requests each at the same moment against a limit of 10 a minute;
  prints how many got through, over several trials. DRF reads the client's history, decides and writes it
  back, so requests that arrive together pass together; config/throttling.py decides atomically.
- Cost: the time of one decision, for 200 clients making 10 requests each at a limit of 60 a minute (none
  refused), the way a volunteer's answer request checks its limit.

Both against the Redis cache at REDIS_URL (default redis://127.0.0.1:6379/0), as in production.
Run: .venv/bin/python benchmarks/rate_limits.py [--trials 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def throttle_class(base: type, rate: str, key: str) -> Any:
    class Throttle(base):  # type: ignore[misc, valid-type]
        scope = "benchmark"
        THROTTLE_RATES = {"benchmark": rate}

        def get_cache_key(self, request: Any, view: Any) -> str:
            return key

    return Throttle


def flood(base: type) -> int:
    throttle = throttle_class(base, "10/m", f"rate-benchmark-{uuid.uuid4().hex}")
    start = threading.Barrier(8)
    allowed: list[bool] = []

    def client() -> None:
        start.wait()
        for _ in range(10):
            allowed.append(throttle().allow_request(None, None))

    threads = [threading.Thread(target=client) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return allowed.count(True)


def cost_ms(base: type, clients: int = 200, requests: int = 10) -> float:
    throttles = [throttle_class(base, "60/m", f"rate-benchmark-{uuid.uuid4().hex}") for _ in range(clients)]
    started = time.perf_counter()
    for _ in range(requests):
        for throttle in throttles:
            assert throttle().allow_request(None, None)
    return (time.perf_counter() - started) / (clients * requests) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ["REDIS_URL"] = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    import django

    django.setup()
    from django.core.cache import cache
    from rest_framework.throttling import SimpleRateThrottle

    from config.throttling import AtomicRateThrottle

    cache.get("warm-up")
    print("8 threads x 10 requests at once from one client, limit 10 a minute, Redis cache:")
    for base in (SimpleRateThrottle, AtomicRateThrottle):
        got = [flood(base) for _ in range(args.trials)]
        print(f"  {base.__name__:<20} let through {got} of 80 (limit 10)")
    print("one decision, 200 clients x 10 requests, limit 60 a minute (none refused):")
    for _ in range(2):  # twice, interleaved: the machine is shared
        for base in (SimpleRateThrottle, AtomicRateThrottle):
            print(f"  {base.__name__:<20} {cost_ms(base):.3f} ms")


if __name__ == "__main__":
    main()
