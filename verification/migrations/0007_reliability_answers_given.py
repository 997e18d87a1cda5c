"""An exact count of each volunteer's answers per campaign, kept with their statistics, so that next-task
reads one row instead of counting a regular's answers (benchmarks/regular_volunteer.py)."""

from typing import Any

from django.db import migrations, models
from django.db.models import Count, OuterRef, Subquery, Value
from django.db.models.functions import Coalesce


def count_answers(apps: Any, schema_editor: Any) -> None:
    Answer = apps.get_model("verification", "Answer")
    VolunteerReliability = apps.get_model("verification", "VolunteerReliability")
    given = (
        Answer.objects.filter(campaign_id=OuterRef("campaign_id"), volunteer_id=OuterRef("volunteer_id"))
        .order_by()
        .values("volunteer_id")
        .annotate(n=Count("id"))
        .values("n")
    )
    VolunteerReliability.objects.update(answers_given=Coalesce(Subquery(given), Value(0)))
    # Every answer since the statistics were kept has its row; answers from before then may not.
    have = set(VolunteerReliability.objects.values_list("campaign_id", "volunteer_id"))
    missing = [
        VolunteerReliability(campaign_id=c, volunteer_id=v, answers_given=n, n_answers=n)
        for c, v, n in Answer.objects.order_by()
        .values_list("campaign_id", "volunteer_id")
        .annotate(n=Count("id"))
        if (c, v) not in have
    ]
    VolunteerReliability.objects.bulk_create(missing, batch_size=1000)


class Migration(migrations.Migration):
    dependencies = [("verification", "0006_ledger_chained_after_commit")]

    operations = [
        migrations.AddField(
            model_name="volunteerreliability",
            name="answers_given",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.RunPython(count_answers, migrations.RunPython.noop),
    ]
