"""The ledger trigger plans its statements for each call (PostgreSQL).

Connections now reuse generic plans (plan_cache_mode=auto), and PL/pgSQL follows the session's setting.
LedgerPending is always nearly empty of live rows but gathers a dead row per answer until vacuum: a generic
plan made while it was small deletes by scanning it whole, a custom one by its primary key.
"""

from typing import Any

from django.db import migrations


def pin_custom_plans(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            "ALTER FUNCTION corroborate_ledger_chain() SET plan_cache_mode = force_custom_plan"
        )


def unpin(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER FUNCTION corroborate_ledger_chain() RESET plan_cache_mode")


class Migration(migrations.Migration):
    dependencies = [("verification", "0003_ledger_chained_at_commit")]

    operations = [migrations.RunPython(pin_custom_plans, unpin)]
