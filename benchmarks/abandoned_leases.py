"""Next-task cost when many volunteers walked away from their tasks, with and without the "all slots leased" hint.

A volunteer who closes the tab keeps the task's slot until the lease expires (10 minutes by default). Those
tasks are the ones in progress, at the top of the serving order, so every next-task walks past them. With the
hint (`Task.leases_full_until`, set when a lease takes a task's last slot) the walk passes each of them on a
column of the row; without it, it counts each one's leases. Same database, same tasks, same run: first with
the hints the leases set, then with the hints cleared.

PostgreSQL, in a fresh database it creates and drops (like benchmarks/volunteer_load.py).
Run: .venv/bin/python benchmarks/abandoned_leases.py [--abandoned 2000] [--leases 200]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import volunteer_load  # its database set-up and campaign generator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    volunteer_load.scratch_arguments(parser, database="corroborate_abandoned", tasks=20_000)
    parser.add_argument("--abandoned", type=int, default=2_000, help="tasks leased by volunteers who left")
    parser.add_argument("--leases", type=int, default=200, help="next-task calls timed in each half")
    args = parser.parse_args()
    with volunteer_load.scratch_campaign(args) as campaign:
        from django.db import connection
        from django.utils import timezone

        from tasks import services
        from tasks.models import Task, Volunteer

        now = timezone.now()
        top = list(Task.objects.filter(campaign=campaign, is_gold=False).order_by("id")[: args.abandoned])
        Task.objects.filter(pk__in=[t.pk for t in top]).update(priority=5.0)  # in progress: served first
        for volunteer in Volunteer.objects.bulk_create([Volunteer(is_anonymous=True) for _ in top]):
            services.task_lease_next(campaign=campaign, volunteer=volunteer, now=now)
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")

        def ms_per_lease() -> float:
            fresh = Volunteer.objects.bulk_create([Volunteer(is_anonymous=True) for _ in range(args.leases)])
            started = time.perf_counter()
            for volunteer in fresh:
                assert services.task_lease_next(campaign=campaign, volunteer=volunteer, now=now) is not None
            return (time.perf_counter() - started) / args.leases * 1000

        hinted = Task.objects.exclude(leases_full_until=None).count()
        with_hint = ms_per_lease()
        Task.objects.update(leases_full_until=None)
        without_hint = ms_per_lease()
        print(
            f"{args.abandoned} abandoned leases at the top of the serving order ({hinted} tasks hinted), "
            f"{args.leases} next-task calls each way, PostgreSQL, in-process"
        )
        print(
            f"next-task: {with_hint:.2f} ms with the hint vs {without_hint:.2f} ms counting every lease "
            f"({100 * (1 - with_hint / without_hint):.0f}% less)"
        )


if __name__ == "__main__":
    main()
