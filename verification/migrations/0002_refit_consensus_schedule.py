"""Create the django-q schedule that refits every live campaign's consensus every five minutes."""

from __future__ import annotations

from typing import Any

from django.db import migrations

SCHEDULE_NAME = "refit-consensus"


def create_schedule(apps: Any, schema_editor: Any) -> None:
    schedule = apps.get_model("django_q", "Schedule")
    schedule.objects.update_or_create(
        name=SCHEDULE_NAME,
        defaults={
            "func": "verification.jobs.refit_all_campaigns",
            "schedule_type": "I",  # Schedule.MINUTES
            "minutes": 5,
            "repeats": -1,
        },
    )


def delete_schedule(apps: Any, schema_editor: Any) -> None:
    apps.get_model("django_q", "Schedule").objects.filter(name=SCHEDULE_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("verification", "0001_initial"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(create_schedule, delete_schedule)]
