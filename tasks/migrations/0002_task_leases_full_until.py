from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("tasks", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="task",
            name="leases_full_until",
            field=models.DateTimeField(
                blank=True,
                help_text="A hint: every open slot is leased until at least this time, so the next-task walk passes the task without counting its leases; cleared when an answer or a skip frees a slot",
                null=True,
            ),
        ),
    ]
