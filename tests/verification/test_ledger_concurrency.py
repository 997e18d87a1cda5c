"""Concurrent ledger appends on PostgreSQL still form one chain (the LedgerHead row lock serialises the
chainers), chained right after each commit or, when another request was chaining, by the next chainer."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection, transaction

from tasks import services as task_services
from tasks.models import Campaign
from verification import ledger
from verification import services as verification_services
from verification.models import LedgerEntry, LedgerHead

THREADS = 8
APPENDS_PER_THREAD = 15


@pytest.mark.django_db(transaction=True)
def test_concurrent_appends_form_one_unbroken_chain(require_postgres: None) -> None:
    campaign = task_services.campaign_create(slug="race", title="Race", kind=Campaign.Kind.IMAGERY)
    start = threading.Barrier(THREADS)
    errors: list[BaseException] = []

    def append_many(worker: int) -> None:
        try:
            start.wait()
            for n in range(APPENDS_PER_THREAD):
                with transaction.atomic():
                    verification_services.ledger_append(
                        campaign=campaign, record={"type": "test", "worker": worker, "n": n}
                    )
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=append_many, args=(w,)) for w in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    # Chained after each commit without waiting for the head: a record committed while another thread was
    # chaining may still wait (for the next commit or the "ledger-chain" job). Reading chains it first.
    verification_services.ledger_chain_pending(campaign_id=campaign.pk)
    entries = [e.as_line() for e in LedgerEntry.objects.filter(campaign=campaign).order_by("seq")]
    head = LedgerHead.objects.get(campaign=campaign)
    assert len(entries) == 1 + THREADS * APPENDS_PER_THREAD
    assert ledger.verify_entries(entries, expected_head=head.head_hash) is None
    assert head.seq == len(entries) - 1
    assert verification_services.ledger_verify(campaign=campaign) is None
    # Each worker's own appends appear in its order, interleaved with the others'.
    for worker in range(THREADS):
        ns = [e["record"]["n"] for e in entries if e["record"].get("worker") == worker]
        assert ns == list(range(APPENDS_PER_THREAD))


@pytest.mark.django_db(transaction=True)
def test_records_are_chained_at_commit_and_vanish_with_a_rollback(
    require_postgres: None, settings: Any
) -> None:
    """In a transaction of its own the record waits in LedgerPending until COMMIT, then is chained at once,
    with the hash the application computes; a rolled-back transaction leaves no entry and no gap."""
    from verification.models import LedgerPending

    settings.LEDGER_CHAIN_INTERVAL = 0  # the chainer after every commit (the interval has its own test)

    campaign = task_services.campaign_create(slug="commit", title="Commit", kind=Campaign.Kind.IMAGERY)
    record = {"type": "test", "text": 'é "quoted" \\ back\nslash', "nested": {"b": 1, "a": [1.5, None, True]}}
    with transaction.atomic():
        verification_services.ledger_append(campaign=campaign, record=record)
        assert (
            LedgerPending.objects.count() == 1
        )  # not chained yet: the head is not locked until after COMMIT
        assert not LedgerEntry.objects.filter(campaign=campaign, record__type="test").exists()
    with pytest.raises(RuntimeError), transaction.atomic():
        verification_services.ledger_append(campaign=campaign, record={"type": "rolled back"})
        raise RuntimeError("the change this record described failed")
    assert LedgerPending.objects.count() == 0
    entries = list(LedgerEntry.objects.filter(campaign=campaign).order_by("seq"))
    assert [e.record["type"] for e in entries] == ["campaign_created", "test"]
    last = entries[-1]
    assert last.record == {**record, "at": last.record["at"]}
    assert last.prev_hash == entries[-2].entry_hash
    assert last.entry_hash == ledger.entry_hash(last.prev_hash, last.record)
    head = LedgerHead.objects.get(campaign=campaign)
    assert (head.seq, head.head_hash) == (last.seq, last.entry_hash)
    assert verification_services.ledger_verify(campaign=campaign) is None


@pytest.mark.django_db(transaction=True)
def test_a_record_left_waiting_is_chained_by_the_next_reader_or_the_job(
    require_postgres: None, settings: Any
) -> None:
    """While another connection holds the head, the after-commit chainer does not wait: the record stays
    in LedgerPending, committed. The next chainer takes it; the minute job takes what a quiet campaign left."""
    import psycopg

    from verification import jobs
    from verification.models import LedgerPending

    settings.LEDGER_CHAIN_INTERVAL = 0

    campaign = task_services.campaign_create(slug="held", title="Held", kind=Campaign.Kind.IMAGERY)
    settings = connection.settings_dict
    holder = psycopg.connect(
        host=settings["HOST"],
        port=settings["PORT"] or 5432,
        user=settings["USER"],
        dbname=settings["NAME"],
        password=settings["PASSWORD"] or None,
    )
    try:
        holder.execute(
            "SELECT 1 FROM verification_ledgerhead WHERE campaign_id = %s FOR UPDATE", [campaign.pk]
        )
        with transaction.atomic():
            verification_services.ledger_append(campaign=campaign, record={"type": "test", "n": 1})
        # Committed, not chained, and the request did not wait for the head.
        assert LedgerPending.objects.filter(campaign=campaign).count() == 1
        holder.rollback()
        assert jobs.ledger_chain_all() == 1
    finally:
        holder.close()
    assert not LedgerPending.objects.exists()
    entries = list(LedgerEntry.objects.filter(campaign=campaign).order_by("seq"))
    assert [e.record.get("n") for e in entries] == [None, 1]
    assert verification_services.ledger_verify(campaign=campaign) is None
    # A later commit chains its own record (and any left behind) at once.
    with transaction.atomic():
        verification_services.ledger_append(campaign=campaign, record={"type": "test", "n": 2})
    assert not LedgerPending.objects.exists()
    assert LedgerHead.objects.get(campaign=campaign).seq == 2


@pytest.mark.django_db(transaction=True)
def test_a_process_chains_at_most_once_an_interval_and_every_read_chains_first(
    require_postgres: None, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under load one chaining call takes a batch: after a commit, a process chains again only once
    LEDGER_CHAIN_INTERVAL has passed. The records in between wait, committed, and nothing reads the ledger
    without chaining them first."""
    from verification.models import LedgerPending

    settings.LEDGER_CHAIN_INTERVAL = 60.0  # nothing in this test waits for it
    campaign = task_services.campaign_create(slug="batch", title="Batch", kind=Campaign.Kind.IMAGERY)
    verification_services._chained_after_commit_at.pop(campaign.pk, None)
    after_commit: list[int] = []
    chain = verification_services.ledger_chain_pending

    def counted(*, campaign_id: int, wait: bool = True) -> int:
        if not wait:
            after_commit.append(campaign_id)
        return chain(campaign_id=campaign_id, wait=wait)

    monkeypatch.setattr(verification_services, "ledger_chain_pending", counted)
    for n in range(5):
        with transaction.atomic():
            verification_services.ledger_append(campaign=campaign, record={"type": "test", "n": n})
    assert after_commit == [campaign.pk]  # the first commit chained; the next four wait
    assert LedgerPending.objects.filter(campaign=campaign).count() == 4
    assert verification_services.ledger_verify(campaign=campaign) is None  # reading chains them first
    assert not LedgerPending.objects.exists()
    assert LedgerHead.objects.get(campaign=campaign).seq == 5
    # Once the interval has passed, the next commit chains again.
    verification_services._chained_after_commit_at[campaign.pk] -= 61
    with transaction.atomic():
        verification_services.ledger_append(campaign=campaign, record={"type": "test", "n": 5})
    assert after_commit == [campaign.pk] * 2
    assert not LedgerPending.objects.exists()
    entries = [e.record.get("n") for e in LedgerEntry.objects.filter(campaign=campaign).order_by("seq")]
    assert entries == [None, 0, 1, 2, 3, 4, 5]


@pytest.mark.django_db
def test_ledger_chain_schedule_exists_after_migrations() -> None:
    from django_q.models import Schedule

    schedule = Schedule.objects.get(name="ledger-chain")
    assert schedule.func == "verification.jobs.ledger_chain_all"
    assert schedule.schedule_type == Schedule.MINUTES and schedule.minutes == 1 and schedule.repeats < 0
