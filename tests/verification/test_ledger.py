"""The campaign ledger: appending in transactions, verifying, and detecting any tampering."""

from __future__ import annotations

import copy
import json

import pytest
from django.db import transaction
from hypothesis import given
from hypothesis import strategies as st

from tests.factories import CampaignFactory
from verification import ledger
from verification.models import LedgerEntry, LedgerHead
from verification.services import ledger_append

records = st.lists(
    st.dictionaries(
        st.sampled_from(["type", "task", "label", "note", "n"]),
        st.one_of(st.integers(-5, 10**6), st.text(max_size=12), st.booleans()),
        min_size=1,
    ),
    min_size=2,
    max_size=12,
)


def _chain(items: list[dict]) -> list[dict]:
    entries, prev = [], ledger.GENESIS_HASH
    for seq, record in enumerate(items):
        entry = ledger.make_entry(seq, prev, record)
        entries.append(entry)
        prev = entry["entry_hash"]
    return entries


def test_entry_hash_follows_the_documented_formula():
    import hashlib

    record = {"type": "answer", "task": 1, "label": "détruit"}
    expected = hashlib.sha256(
        ("0" * 64 + "\n").encode()
        + json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    ).hexdigest()
    assert ledger.entry_hash("0" * 64, record) == expected


@given(records)
def test_an_untouched_chain_verifies(items):
    assert ledger.verify_entries(_chain(items)) is None


@given(records, st.data())
def test_editing_any_record_is_detected(items, data):
    entries = _chain(items)
    index = data.draw(st.integers(0, len(entries) - 1))
    tampered = copy.deepcopy(entries)
    tampered[index]["record"]["tampered"] = data.draw(st.integers())
    problem = ledger.verify_entries(tampered)
    assert problem is not None and problem.position == index


@given(records, st.data())
def test_deleting_any_entry_is_detected(items, data):
    entries = _chain(items)
    index = data.draw(st.integers(0, len(entries) - 1))
    del entries[index]
    if index == len(items) - 1:
        # Dropping the last line leaves a valid prefix: only the recorded head reveals it.
        assert ledger.verify_entries(entries, expected_head=_chain(items)[-1]["entry_hash"]) is not None
    else:
        assert ledger.verify_entries(entries) is not None


@given(records, st.data())
def test_reordering_entries_is_detected(items, data):
    entries = _chain(items)
    i = data.draw(st.integers(0, len(entries) - 2))
    j = data.draw(st.integers(i + 1, len(entries) - 1))
    entries[i], entries[j] = entries[j], entries[i]
    assert ledger.verify_entries(entries) is not None


@given(records, st.data())
def test_rehashing_an_edited_entry_still_breaks_the_chain(items, data):
    entries = _chain(items)
    index = data.draw(st.integers(0, len(entries) - 2))
    entries[index]["record"] = {"forged": True}
    entries[index]["entry_hash"] = ledger.entry_hash(entries[index]["prev_hash"], entries[index]["record"])
    problem = ledger.verify_entries(entries)
    assert problem is not None and problem.position == index + 1


@pytest.mark.django_db
def test_appends_in_the_database_form_one_verifiable_chain():
    campaign = CampaignFactory()
    with transaction.atomic():
        for n in range(5):
            ledger_append(campaign=campaign, record={"type": "test", "n": n})
    lines = [e.as_line() for e in LedgerEntry.objects.filter(campaign=campaign).order_by("seq")]
    assert [line["seq"] for line in lines] == list(range(5))
    assert lines[0]["prev_hash"] == "0" * 64
    head = LedgerHead.objects.get(campaign=campaign)
    assert head.seq == 4
    assert ledger.verify_entries(lines, expected_head=head.head_hash) is None


@pytest.mark.django_db(transaction=True)
def test_append_outside_a_transaction_is_refused():
    campaign = CampaignFactory()
    with pytest.raises(RuntimeError):
        ledger_append(campaign=campaign, record={"type": "test"})


@pytest.mark.django_db
def test_a_rolled_back_change_leaves_no_ledger_entry():
    campaign = CampaignFactory()
    with pytest.raises(ValueError), transaction.atomic():
        ledger_append(campaign=campaign, record={"type": "test"})
        raise ValueError("the change failed")
    assert not LedgerEntry.objects.filter(campaign=campaign).exists()
