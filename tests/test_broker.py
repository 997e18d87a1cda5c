"""django-q2 uses Redis as its broker when REDIS_URL is set, and the ORM broker otherwise."""

from __future__ import annotations

import uuid

import pytest
from django_q.brokers import get_broker
from django_q.signing import SignedPackage


def test_redis_broker_round_trips_a_job(require_redis: str, settings) -> None:
    from django_q.conf import Conf

    assert Conf.REDIS, "with REDIS_URL set, django-q must be configured for Redis"
    broker = get_broker(list_key=f"corroborate-test-{uuid.uuid4().hex}")
    assert type(broker).__name__ == "Redis"
    assert broker.ping()
    package = SignedPackage.dumps({"id": "job-1", "func": "tasks.jobs.job_run", "args": (1,)})
    broker.enqueue(package)
    assert broker.queue_size() == 1
    ((_, received),) = broker.dequeue()
    assert SignedPackage.loads(received)["args"] == (1,)
    broker.delete_queue()


@pytest.mark.django_db
def test_orm_broker_round_trips_a_job_without_redis() -> None:
    from django_q.brokers.orm import ORM

    broker = ORM(list_key=f"corroborate-test-{uuid.uuid4().hex}")
    package = SignedPackage.dumps({"id": "job-2", "func": "tasks.jobs.job_run", "args": (2,)})
    broker.enqueue(package)
    ((task_id, received),) = broker.dequeue()
    assert SignedPackage.loads(received)["args"] == (2,)
    broker.acknowledge(task_id)
    assert broker.queue_size() == 0
