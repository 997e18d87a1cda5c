"""Proof of work for newcomers past the site-wide budget: genuine, fresh, enough work, and spent once."""

from __future__ import annotations

import hashlib
import threading
from typing import Any

import pytest

from config import proof_of_work


def solve(challenge: str, bits: int) -> str:
    """What the classify page does, in Python."""
    nonce = 0
    while not proof_of_work.proof_holds(f"{challenge}#{nonce}", bits):
        nonce += 1
    return f"{challenge}#{nonce}"


def test_leading_zero_bits_counts_whole_and_partial_bytes() -> None:
    assert proof_of_work.leading_zero_bits(bytes([0xFF])) == 0
    assert proof_of_work.leading_zero_bits(bytes([0x00, 0x01])) == 15
    assert proof_of_work.leading_zero_bits(bytes([0x00, 0x00, 0x10])) == 19
    assert proof_of_work.leading_zero_bits(bytes(4)) == 32


def test_proof_holds_checks_the_sha256_of_the_whole_proof() -> None:
    proof = solve("challenge", 12)
    digest = hashlib.sha256(proof.encode()).digest()
    assert digest[0] == 0 and digest[1] < 0x10
    # Not every nonce will do: the first nonce that fails 12 bits is refused.
    failing = next(n for n in range(100) if not proof_of_work.proof_holds(f"challenge#{n}", 12))
    assert not proof_of_work.proof_holds(f"challenge#{failing}", 12)


@pytest.mark.django_db
def test_a_solved_challenge_admits_one_newcomer_once() -> None:
    proof = solve(proof_of_work.challenge_issue(bits=10), 10)
    assert proof_of_work.proof_admits(proof)
    assert not proof_of_work.proof_admits(proof)  # spent


@pytest.mark.django_db
def test_forged_unsolved_malformed_and_stale_proofs_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    challenge = proof_of_work.challenge_issue(bits=12)
    # A client cannot lower the difficulty: the bits are inside the signed challenge.
    easier = challenge.replace("12.", "1.", 1)
    assert not proof_of_work.proof_admits(solve(easier, 1))
    # A challenge the server never issued.
    assert not proof_of_work.proof_admits(solve("1.made-up:challenge:sig", 1))
    # Not enough work.
    lazy = next(
        f"{challenge}#{n}" for n in range(1000) if not proof_of_work.proof_holds(f"{challenge}#{n}", 12)
    )
    assert not proof_of_work.proof_admits(lazy)
    for junk in ("", "#", "no-separator", "x" * 1000 + "#1"):
        assert not proof_of_work.proof_admits(junk)
    # Too old: the challenge was issued more than NEWCOMER_PROOF_SECONDS ago.
    solved = solve(challenge, 12)
    import django.core.signing as signing

    real_time = signing.time.time
    monkeypatch.setattr(signing.time, "time", lambda: real_time() + 301)
    assert not proof_of_work.proof_admits(solved)
    monkeypatch.setattr(signing.time, "time", real_time)
    assert proof_of_work.proof_admits(solved)


@pytest.mark.django_db
def test_the_same_proof_shown_by_eight_requests_at_once_admits_exactly_one() -> None:
    """One SET NX decides (on Redis in CI), so a script cannot spend one proof on several identities."""
    proof = solve(proof_of_work.challenge_issue(bits=8), 8)
    barrier = threading.Barrier(8)
    admitted: list[bool] = []

    def show() -> None:
        barrier.wait()
        admitted.append(proof_of_work.proof_admits(proof))

    threads = [threading.Thread(target=show) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(admitted) == [False] * 7 + [True]


def test_no_challenge_when_proofs_are_turned_off(settings: Any) -> None:
    settings.NEWCOMER_PROOF_BITS = 0
    assert proof_of_work.challenge_for_refused_newcomer() is None
    settings.NEWCOMER_PROOF_BITS = 14
    offered = proof_of_work.challenge_for_refused_newcomer()
    assert offered is not None and offered["bits"] == 14 and offered["header"] == "X-Newcomer-Proof"
    assert proof_of_work.challenge_bits(str(offered["challenge"]), max_age_seconds=60) == 14
