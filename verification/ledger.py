"""The hash chain of PRODUCT.md: canonical JSON, entry hashes, and verification of a sequence of entries."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

GENESIS_HASH = "0" * 64


def canonical(record: Any) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def entry_hash(prev_hash: str, record: Any) -> str:
    return hashlib.sha256((prev_hash + "\n").encode() + canonical(record)).hexdigest()


def make_entry(seq: int, prev_hash: str, record: Mapping[str, Any]) -> dict[str, Any]:
    return {"seq": seq, "prev_hash": prev_hash, "entry_hash": entry_hash(prev_hash, record), "record": record}


@dataclass(frozen=True)
class LedgerProblem:
    seq: int | None
    position: int
    message: str

    def __str__(self) -> str:
        where = f"ledger entry seq {self.seq}" if self.seq is not None else f"ledger line {self.position + 1}"
        return f"{where}: {self.message}"


def verify_entries(
    entries: Iterable[Mapping[str, Any]], *, expected_head: str | None = None
) -> LedgerProblem | None:
    """Return the first problem in a chain (edit, deletion, insertion, reordering), or None when intact.

    Each entry must have consecutive `seq` from 0, `prev_hash` equal to the previous `entry_hash` (64 zeros
    first), and `entry_hash` recomputed from `prev_hash` and the canonical record.
    """
    prev = GENESIS_HASH
    position = -1
    for position, entry in enumerate(entries):
        seq = entry.get("seq") if isinstance(entry, Mapping) else None
        if not isinstance(entry, Mapping) or set(entry) != {"seq", "prev_hash", "entry_hash", "record"}:
            return LedgerProblem(seq if isinstance(seq, int) else None, position, "malformed entry")
        if seq != position:
            return LedgerProblem(seq if isinstance(seq, int) else None, position, f"expected seq {position}")
        if entry["prev_hash"] != prev:
            return LedgerProblem(
                position, position, "prev_hash does not match the previous entry (chain broken)"
            )
        if entry_hash(entry["prev_hash"], entry["record"]) != entry["entry_hash"]:
            return LedgerProblem(position, position, "entry_hash does not match its record (entry edited)")
        prev = entry["entry_hash"]
    if expected_head is not None and prev != expected_head:
        return LedgerProblem(
            None, position + 1, f"chain ends at {prev[:12]}…, expected head {expected_head[:12]}…"
        )
    return None


def head_of(entries: Iterable[Mapping[str, Any]]) -> str:
    head = GENESIS_HASH
    for entry in entries:
        head = str(entry["entry_hash"])
    return head
