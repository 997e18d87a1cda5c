"""LedgerPending, and on PostgreSQL the deferred trigger that chains it into the ledger at COMMIT.

The trigger computes what verification.ledger.entry_hash computes: sha256(prev_hash + "\\n" + canonical),
hex, over the canonical text the application wrote (json.dumps with sorted keys, compact separators, UTF-8).
"""

from typing import Any

import django.db.models.deletion
from django.db import migrations, models

CHAIN_FUNCTION = r"""
CREATE OR REPLACE FUNCTION corroborate_ledger_chain() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    head record;
    new_hash text;
BEGIN
    SELECT id, seq, head_hash INTO head FROM verification_ledgerhead
        WHERE campaign_id = NEW.campaign_id FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO verification_ledgerhead (campaign_id, seq, head_hash)
            VALUES (NEW.campaign_id, -1, repeat('0', 64)) ON CONFLICT (campaign_id) DO NOTHING;
        SELECT id, seq, head_hash INTO head FROM verification_ledgerhead
            WHERE campaign_id = NEW.campaign_id FOR UPDATE;
    END IF;
    new_hash := encode(sha256(convert_to(head.head_hash || E'\n' || NEW.canonical, 'UTF8')), 'hex');
    INSERT INTO verification_ledgerentry (campaign_id, seq, prev_hash, entry_hash, record, created_at)
        VALUES (NEW.campaign_id, head.seq + 1, head.head_hash, new_hash, NEW.canonical::jsonb, NEW.created_at);
    UPDATE verification_ledgerhead SET seq = head.seq + 1, head_hash = new_hash WHERE id = head.id;
    DELETE FROM verification_ledgerpending WHERE id = NEW.id;
    RETURN NULL;
END
$$
"""
CHAIN_TRIGGER = """
CREATE CONSTRAINT TRIGGER ledger_chain_at_commit AFTER INSERT ON verification_ledgerpending
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION corroborate_ledger_chain()
"""


def create_trigger(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CHAIN_FUNCTION)
        schema_editor.execute(CHAIN_TRIGGER)


def drop_trigger(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP TRIGGER IF EXISTS ledger_chain_at_commit ON verification_ledgerpending")
        schema_editor.execute("DROP FUNCTION IF EXISTS corroborate_ledger_chain()")


class Migration(migrations.Migration):
    dependencies = [
        ("tasks", "0001_initial"),
        ("verification", "0002_refit_consensus_schedule"),
    ]

    operations = [
        migrations.CreateModel(
            name="LedgerPending",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "canonical",
                    models.TextField(
                        help_text="ledger.canonical(record), the exact text the entry hash covers"
                    ),
                ),
                ("created_at", models.DateTimeField()),
                (
                    "campaign",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="+", to="tasks.campaign"
                    ),
                ),
            ],
        ),
        migrations.RunPython(create_trigger, drop_trigger),
    ]
