"""Newcomers' proof of work: what it costs a person's browser, a script and the server, in one run.

A newcomer refused by the site-wide budget (RATE_NEWCOMERS) is offered a challenge; the classify page solves
it (frontend/static/frontend/proof.js) and comes in at once. This prints, for each difficulty, the time
headless Chromium takes on this machine (median and 90th percentile over fresh challenges; the work is a
geometric draw, so some newcomers wait several times the median), the time a script takes with native SHA-256
(Python's hashlib, OpenSSL's C code behind a Python loop) and, for a script written in C, the mean time at
`openssl speed`'s hash rate, and so how many identities a second one core buys a script beyond the budget. Then the server's cost of checking a proof (signature, one hash,
one SET NX), next to one rate-limit decision, on the configured cache (Redis when REDIS_URL is set).

Run: .venv/bin/python benchmarks/newcomer_proof.py [--bits 12,14,16,18] [--challenges 15]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


def native_solve(challenge: str, bits: int) -> str:
    """The cheapest script: hashlib's SHA-256 with the challenge's state reused for each nonce."""
    base = hashlib.sha256((challenge + "#").encode())
    target_shift = 256 - bits
    nonce = 0
    while True:
        digest = base.copy()
        digest.update(str(nonce).encode())
        if int.from_bytes(digest.digest(), "big") >> target_shift == 0:
            return f"{challenge}#{nonce}"
        nonce += 1


def openssl_hashes_per_second() -> float | None:
    """SHA-256 of 80-byte messages per second on one core in compiled code (`openssl speed`): a script
    written in C, the attacker that counts. None when openssl is not installed."""
    if shutil.which("openssl") is None:
        return None
    out = subprocess.run(
        ["openssl", "speed", "-seconds", "2", "-bytes", "80", "sha256"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    ).stdout
    for line in out.splitlines():
        if line.startswith("sha256"):
            return float(line.split()[1].rstrip("k")) * 1000 / 80
    return None


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bits", default="12,14,16,18")
    parser.add_argument("--challenges", type=int, default=15, help="fresh challenges solved per difficulty")
    args = parser.parse_args()

    import django

    django.setup()
    from django.conf import settings
    from django.test import RequestFactory
    from playwright.sync_api import sync_playwright

    from config import proof_of_work
    from tasks.api import NewcomerThrottle
    from tests.frontend.conftest import CHROMIUM_ARGS  # the flags this machine's Chromium needs

    script = (REPO / "frontend" / "static" / "frontend" / "proof.js").read_text(encoding="utf-8")
    difficulties = [int(b) for b in args.bits.split(",") if b]
    print(
        f"Newcomer proof of work: {args.challenges} fresh challenges per difficulty, default "
        f"NEWCOMER_PROOF_BITS={settings.NEWCOMER_PROOF_BITS}, {os.cpu_count()} cores"
    )
    print(
        f"{'bits':>4} {'hashes (mean)':>14} {'browser p50':>12} {'browser p90':>12} {'script p50':>11} "
        f"{'script mean':>12} {'browser/script':>15} {'identities/s per script core':>29} "
        f"{'C script':>9} {'identities/s per C core':>24}"
    )
    native_rate = openssl_hashes_per_second()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS
        )
        page = browser.new_page()
        page.set_content("<!doctype html><title>proof</title>")
        page.add_script_tag(content=script)
        for bits in difficulties:
            browser_ms: list[float] = []
            script_ms: list[float] = []
            for _ in range(args.challenges):
                challenge = proof_of_work.challenge_issue(bits=bits)
                started = time.perf_counter()
                proof = page.evaluate("([c, b]) => window.CorroborateProof.solve(c, b)", [challenge, bits])
                browser_ms.append((time.perf_counter() - started) * 1000)
                assert proof_of_work.proof_holds(proof, bits), "the browser's proof does not hold"
                started = time.perf_counter()
                native = native_solve(challenge, bits)
                script_ms.append((time.perf_counter() - started) * 1000)
                assert proof_of_work.proof_holds(native, bits)
            ratio = statistics.median(browser_ms) / max(statistics.median(script_ms), 1e-6)
            per_core = 1000 / statistics.mean(script_ms)
            print(
                f"{bits:>4} {2**bits:>14,} {statistics.median(browser_ms):>10.0f}ms "
                f"{percentile(browser_ms, 0.9):>10.0f}ms {statistics.median(script_ms):>9.0f}ms "
                f"{statistics.mean(script_ms):>10.0f}ms {ratio:>14.1f}x {per_core:>29.0f} "
                + (
                    f"{2**bits / native_rate * 1000:>7.0f}ms {native_rate / 2**bits:>24.0f}"
                    if native_rate
                    else f"{'-':>9} {'-':>24}"
                )
            )
        browser.close()

    # The server's side: checking a proof against one sliding-window rate-limit decision.
    bits = 8
    proofs = [native_solve(proof_of_work.challenge_issue(bits=bits), bits) for _ in range(2000)]
    started = time.perf_counter()
    for proof in proofs:
        assert proof_of_work.proof_admits(proof)
    check_ms = (time.perf_counter() - started) * 1000 / len(proofs)
    settings.CORROBORATE_RATE_LIMITS = True
    request = RequestFactory().post("/api/v1/campaigns/x/next-task")
    request.session = {}  # type: ignore[attr-defined]
    from rest_framework.request import Request

    drf_request = Request(request)
    throttle = NewcomerThrottle()
    throttle.num_requests = 10**9  # type: ignore[attr-defined]
    started = time.perf_counter()
    for _ in range(2000):
        throttle.allow_request(drf_request, None)
    decision_ms = (time.perf_counter() - started) * 1000 / 2000
    cache = settings.CACHES["default"]["BACKEND"]
    print(
        f"\nServer, cache {cache}: checking a proof {check_ms:.3f} ms (signature, one SHA-256, one SET NX) "
        f"vs one newcomer-budget decision {decision_ms:.3f} ms, same run"
    )


if __name__ == "__main__":
    main()
