"""The periodic refit on PostgreSQL writes back in chunks, each in its own transaction: an answer to a task
already written does not wait for the rest of the campaign's write-back."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from django.db import connection

from tasks.models import Task
from tests.factories import CampaignFactory, TaskFactory, VolunteerFactory
from verification import services as verification_services
from verification.models import Answer, Consensus


@pytest.mark.django_db(transaction=True)
def test_an_answer_during_the_write_back_waits_for_one_chunk_at_most(
    require_postgres: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(verification_services, "REFIT_BATCH", 2)
    campaign = CampaignFactory(min_answers=3, max_answers=10)
    tasks = [TaskFactory(campaign=campaign) for _ in range(6)]
    crowd = [VolunteerFactory() for _ in range(2)]
    for task in tasks:
        for volunteer, value in zip(crowd, ("destroyed", "intact"), strict=True):
            verification_services.answer_submit(
                task=task, volunteer=volunteer, answer={"damage": value}, client_id=uuid.uuid4()
            )
    real_write_chunk = verification_services._refit_write_chunk
    outcome: dict[str, Any] = {}

    def answer_first_chunk_task() -> None:
        try:
            verification_services.answer_submit(
                task=Task.objects.get(pk=tasks[0].pk),
                volunteer=VolunteerFactory(),
                answer={"damage": "destroyed"},
                client_id=uuid.uuid4(),
            )
            outcome["answered"] = True
        except BaseException as exc:  # reported in the main thread
            outcome["error"] = exc
        finally:
            connection.close()

    def write_chunk_then_answer(**kwargs: Any) -> Any:
        written = real_write_chunk(**kwargs)
        if tasks[2].pk in kwargs["chunk"]:
            # The second chunk's rows are locked now and the first chunk has committed: an answer to the
            # first chunk's task must go through without waiting for this transaction.
            other = threading.Thread(target=answer_first_chunk_task)
            other.start()
            other.join(timeout=20)
            outcome["waited_for_the_refit"] = other.is_alive()
        return written

    monkeypatch.setattr(verification_services, "_refit_write_chunk", write_chunk_then_answer)
    summary = verification_services.consensus_recompute_campaign(campaign=campaign)

    assert outcome.get("waited_for_the_refit") is False and outcome.get("answered"), outcome
    assert summary["answers"] == 12 and summary["changed_during_refit"] == 0
    assert Answer.objects.filter(task=tasks[0]).count() == 3
    assert Consensus.objects.get(task=tasks[0]).n_answers == 3  # the answer's own consensus, after the chunk
    assert set(Consensus.objects.filter(task__in=tasks[1:]).values_list("method", flat=True)) == {"auto"}
