"""Proof of work that lets newcomers past the site-wide budget: a browser pays a moment, a script pays per identity.

Requests without a volunteer session share one budget (``RATE_NEWCOMERS``), since without IP addresses
nothing tells their senders apart. A campaign launch can bring more real people than that budget; instead of
making them wait for the next window, a refused newcomer gets a signed challenge and comes back with a nonce
whose SHA-256, taken over ``challenge + "#" + nonce``, starts with the challenge's number of zero bits (2^16 hashes
on average by default: about a tenth of a second in headless Chromium on a 2-core server, several times that on a
slow phone; ``frontend/static/frontend/proof.js``, ``benchmarks/newcomer_proof.py``). A
challenge is good for one admission only, within ``NEWCOMER_PROOF_SECONDS`` of being issued; the difficulty is
inside the signed challenge, so no client can choose an easier one.
"""

from __future__ import annotations

import hashlib
import secrets

from django.conf import settings
from django.core import signing
from django.core.cache import cache

HEADER = "X-Newcomer-Proof"
_SALT = "corroborate.newcomer-proof"
_SEPARATOR = "#"
# A nonce is a short decimal counter in practice; anything longer is not an honest attempt.
_MAX_PROOF_LENGTH = 400


def leading_zero_bits(digest: bytes) -> int:
    """Number of zero bits at the start of ``digest``."""
    bits = 0
    for byte in digest:
        if byte == 0:
            bits += 8
            continue
        return bits + 8 - byte.bit_length()
    return bits


def proof_holds(proof: str, bits: int) -> bool:
    """Whether SHA-256 of the whole proof (``challenge#nonce``) starts with ``bits`` zero bits."""
    return leading_zero_bits(hashlib.sha256(proof.encode("utf-8")).digest()) >= bits


def challenge_issue(*, bits: int) -> str:
    """A fresh signed challenge asking for ``bits`` zero bits."""
    return signing.TimestampSigner(salt=_SALT).sign(f"{bits}.{secrets.token_urlsafe(12)}")


def challenge_bits(challenge: str, *, max_age_seconds: int) -> int | None:
    """The difficulty a challenge asks for, or None when it is forged, malformed or too old."""
    try:
        value = signing.TimestampSigner(salt=_SALT).unsign(challenge, max_age=max_age_seconds)
        return int(value.split(".", 1)[0])
    except (signing.BadSignature, ValueError):
        return None


def proof_admits(proof: str) -> bool:
    """Whether ``proof`` (the header's value) admits one newcomer: a genuine, fresh, unused challenge with
    enough work done on it. A proof is spent by the first request that shows it."""
    if not proof or len(proof) > _MAX_PROOF_LENGTH or _SEPARATOR not in proof:
        return False
    challenge = proof.rsplit(_SEPARATOR, 1)[0]
    max_age = settings.NEWCOMER_PROOF_SECONDS
    bits = challenge_bits(challenge, max_age_seconds=max_age)
    if bits is None or not proof_holds(proof, bits):
        return False
    # cache.add is one SET NX on Redis: of requests showing the same challenge at once, exactly one gets in.
    # (With Redis down the budget itself stops counting, so no proof is asked for.)
    spent_key = "newcomer-proof:" + hashlib.sha256(challenge.encode("utf-8")).hexdigest()
    return bool(cache.add(spent_key, 1, timeout=int(max_age) + 1))


def challenge_for_refused_newcomer() -> dict[str, object] | None:
    """The ``proof`` member of a refused newcomer's 429 body, or None when proofs are turned off."""
    bits = settings.NEWCOMER_PROOF_BITS
    if bits <= 0:
        return None
    return {
        "challenge": challenge_issue(bits=bits),
        "bits": bits,
        "header": HEADER,
        "expires_in": settings.NEWCOMER_PROOF_SECONDS,
    }
