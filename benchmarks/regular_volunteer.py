"""Next-task cost for a regular with a long history, with and without the index on a volunteer's answers.

Every next-task reads the volunteer's answer counts (in this campaign, and in all campaigns today: the gold
ramp and the progress line). The campaign's count is kept with the volunteer's statistics; today's is
counted from their answers since midnight, which without an index of their own visits every answer the
volunteer ever gave. A regular of Decode Darfur answered thousands of tasks. Same database, same run: a newcomer and a
regular with `--history` answers over the past year (a quarter of them today), among other volunteers'
answers, each leasing `--leases` tasks, with index answer_volunteer_time and then with it dropped. The
answered tasks are closed, so the next-task walk itself costs both volunteers the same.

PostgreSQL, in a fresh database it creates and drops (like benchmarks/volunteer_load.py).
Run: .venv/bin/python benchmarks/regular_volunteer.py [--history 20000] [--leases 200]
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
    volunteer_load.scratch_arguments(parser, database="corroborate_regular", tasks=60_000)
    parser.add_argument("--history", type=int, default=20_000, help="the regular's earlier answers")
    parser.add_argument("--others", type=int, default=20_000, help="other volunteers' answers")
    parser.add_argument("--leases", type=int, default=200, help="next-task calls timed for each volunteer")
    args = parser.parse_args()
    with volunteer_load.scratch_campaign(args) as campaign:
        from django.db import connection
        from django.utils import timezone

        from tasks import services
        from tasks.models import Assignment, Task, Volunteer

        regular, *crowd = Volunteer.objects.bulk_create([Volunteer(is_anonymous=True) for _ in range(201)])
        # History: the regular's answers to the first tasks (a quarter of them in the last day), then the
        # crowd's, all written in SQL (their content does not matter, only how many there are).
        with connection.cursor() as cursor:
            for volunteer_ids, first, count in (
                ([regular.pk], 0, args.history),
                ([v.pk for v in crowd], args.history, args.others),
            ):
                cursor.execute(
                    "INSERT INTO verification_answer (task_id, volunteer_id, campaign_id, answer, label,"
                    " client_id, duration_ms, created_at)"
                    " SELECT t.id, (%s::bigint[])[1 + (n %% cardinality(%s::bigint[]))], t.campaign_id,"
                    " '{\"damage\": \"intact\"}', 'intact', gen_random_uuid(), 4000,"
                    " now() - (CASE WHEN n %% 4 = 0 THEN random() * interval '20 hours'"
                    " ELSE interval '1 day' + random() * interval '364 days' END)"
                    " FROM (SELECT id, campaign_id, row_number() OVER (ORDER BY id) - 1 AS n"
                    "       FROM tasks_task ORDER BY id OFFSET %s LIMIT %s) t",
                    [volunteer_ids, volunteer_ids, first % args.tasks, count],
                )
                cursor.execute(
                    "UPDATE tasks_task SET status = %s, answer_count = 1 WHERE id IN"
                    " (SELECT task_id FROM verification_answer WHERE volunteer_id = ANY(%s))",
                    [Task.Status.RETIRED.value, volunteer_ids],
                )
                # Their statistics rows, as answering writes them (with the exact count of answers here).
                cursor.execute(
                    "INSERT INTO verification_volunteerreliability (campaign_id, volunteer_id, reliability,"
                    " n_answers, answers_given, n_gold, n_gold_correct, flagged, blocked, updated_at)"
                    " SELECT campaign_id, volunteer_id, 0.7, COUNT(*), COUNT(*), 0, 0, false, false, now()"
                    " FROM verification_answer WHERE volunteer_id = ANY(%s) GROUP BY campaign_id, volunteer_id",
                    [volunteer_ids],
                )
                cursor.execute(
                    "INSERT INTO tasks_assignment (task_id, volunteer_id, campaign_id, state, leased_at,"
                    " expires_at) SELECT task_id, volunteer_id, campaign_id, %s, created_at, created_at"
                    " FROM verification_answer WHERE volunteer_id = ANY(%s)",
                    [Assignment.State.ANSWERED.value, volunteer_ids],
                )
            cursor.execute("VACUUM ANALYZE")

        def ms_per_lease(volunteer: Volunteer) -> float:
            started = time.perf_counter()
            for _ in range(args.leases):
                leased = services.task_lease_next_with_stats(
                    campaign=campaign, volunteer=volunteer, now=timezone.now()
                )
                assert leased is not None, "nothing left to lease: raise --tasks"
                # Walk on as a volunteer who skips: the next call leases the next task.
                Assignment.objects.filter(pk=leased.assignment.pk).update(state=Assignment.State.SKIPPED)
            return (time.perf_counter() - started) / args.leases * 1000

        newcomer = Volunteer.objects.create(is_anonymous=True)
        timings = {"with the index": (ms_per_lease(newcomer), ms_per_lease(regular))}
        with connection.cursor() as cursor:
            cursor.execute("DROP INDEX answer_volunteer_time")
            cursor.execute("ANALYZE verification_answer")
        newcomer = Volunteer.objects.create(is_anonymous=True)
        timings["without it"] = (ms_per_lease(newcomer), ms_per_lease(regular))
        print(
            f"{args.tasks} tasks, {args.history + args.others} earlier answers of which the regular's "
            f"{args.history}; {args.leases} next-task calls each, PostgreSQL, in-process"
        )
        for name, (fresh, veteran) in timings.items():
            print(f"next-task {name}: newcomer {fresh:.2f} ms, regular {veteran:.2f} ms")
        with_index, without_index = timings["with the index"][1], timings["without it"][1]
        print(
            f"regular's next-task: {with_index:.2f} ms with index answer_volunteer_time vs "
            f"{without_index:.2f} ms without ({100 * (1 - with_index / without_index):.0f}% less)"
        )


if __name__ == "__main__":
    main()
