"""Ledger records are chained just after their transaction commits instead of at its COMMIT (PostgreSQL).

Migration 0003 chained each record in a deferred trigger, which locked the campaign's ledger head at
COMMIT; PostgreSQL keeps a lock until the commit is on disk, so every answer of a campaign waited for the
previous answer's disk flush (group commit could not batch them), and the answer kept its task's row
locked meanwhile. Now a record waits in LedgerPending, committed with the change it records, and
`corroborate_ledger_chain_pending` chains a campaign's waiting records in one go: called right after the
commit (without waiting for the head: if another chainer holds it, that one or the next takes these
records), before every read of the ledger (waiting for the head), and every minute by the "ledger-chain"
schedule for the few records left behind.

The function computes what verification.ledger.entry_hash computes: sha256(prev_hash + "\\n" + canonical),
hex, over the canonical text the application wrote. It returns how many records it chained, or -1 when it
did not wait for a head held by another chainer.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

SCHEDULE_NAME = "ledger-chain"

CHAIN_PENDING_FUNCTION = r"""
CREATE OR REPLACE FUNCTION corroborate_ledger_chain_pending(p_campaign bigint, p_wait boolean)
RETURNS integer LANGUAGE plpgsql SET plan_cache_mode = force_custom_plan AS $$
DECLARE
    head record;
    pending record;
    seen boolean;
    next_seq bigint;
    prev text;
    chained integer := 0;
BEGIN
    IF NOT p_wait THEN
        -- Nothing waiting (another chainer took it): no lock at all.
        PERFORM 1 FROM verification_ledgerpending WHERE campaign_id = p_campaign LIMIT 1;
        IF NOT FOUND THEN
            RETURN 0;
        END IF;
    END IF;
    FOR attempt IN 1..2 LOOP
        IF p_wait THEN
            SELECT id, seq, head_hash INTO head FROM verification_ledgerhead
                WHERE campaign_id = p_campaign FOR UPDATE;
        ELSE
            SELECT id, seq, head_hash INTO head FROM verification_ledgerhead
                WHERE campaign_id = p_campaign FOR UPDATE SKIP LOCKED;
        END IF;
        EXIT WHEN FOUND;
        IF attempt = 2 OR (NOT p_wait AND EXISTS (
            SELECT 1 FROM verification_ledgerhead WHERE campaign_id = p_campaign
        )) THEN
            RETURN -1;  -- another chainer holds the head: it, or the next one, takes these records
        END IF;
        INSERT INTO verification_ledgerhead (campaign_id, seq, head_hash)
            VALUES (p_campaign, -1, repeat('0', 64)) ON CONFLICT (campaign_id) DO NOTHING;
    END LOOP;
    next_seq := head.seq;
    prev := head.head_hash;
    -- Each pass reads with a fresh snapshot, so records committed meanwhile are taken in the next pass.
    LOOP
        seen := false;
        FOR pending IN
            SELECT id, canonical, created_at FROM verification_ledgerpending
                WHERE campaign_id = p_campaign ORDER BY id LIMIT 1000
        LOOP
            seen := true;
            next_seq := next_seq + 1;
            INSERT INTO verification_ledgerentry (campaign_id, seq, prev_hash, entry_hash, record, created_at)
                VALUES (
                    p_campaign, next_seq, prev,
                    encode(sha256(convert_to(prev || E'\n' || pending.canonical, 'UTF8')), 'hex'),
                    pending.canonical::jsonb, pending.created_at
                )
                RETURNING entry_hash INTO prev;
            DELETE FROM verification_ledgerpending WHERE id = pending.id;
            chained := chained + 1;
        END LOOP;
        EXIT WHEN NOT seen;
    END LOOP;
    IF chained > 0 THEN
        UPDATE verification_ledgerhead SET seq = next_seq, head_hash = prev WHERE id = head.id;
    END IF;
    RETURN chained;
END
$$
"""


def forwards(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CHAIN_PENDING_FUNCTION)
        # Records waiting now are chained by the new function: first the trigger goes, then they are taken.
        schema_editor.execute("DROP TRIGGER IF EXISTS ledger_chain_at_commit ON verification_ledgerpending")
        schema_editor.execute("DROP FUNCTION IF EXISTS corroborate_ledger_chain()")
        schema_editor.execute(
            "SELECT corroborate_ledger_chain_pending(campaign_id, true)"
            " FROM (SELECT DISTINCT campaign_id FROM verification_ledgerpending) c"
        )
    apps.get_model("django_q", "Schedule").objects.update_or_create(
        name=SCHEDULE_NAME,
        defaults={
            "func": "verification.jobs.ledger_chain_all",
            "schedule_type": "I",  # Schedule.MINUTES
            "minutes": 1,
            "repeats": -1,
        },
    )


def backwards(apps: Any, schema_editor: Any) -> None:
    apps.get_model("django_q", "Schedule").objects.filter(name=SCHEDULE_NAME).delete()
    if schema_editor.connection.vendor == "postgresql":
        from importlib import import_module

        at_commit = import_module("verification.migrations.0003_ledger_chained_at_commit")
        schema_editor.execute(
            "SELECT corroborate_ledger_chain_pending(campaign_id, true)"
            " FROM (SELECT DISTINCT campaign_id FROM verification_ledgerpending) c"
        )
        schema_editor.execute(at_commit.CHAIN_FUNCTION)
        schema_editor.execute(at_commit.CHAIN_TRIGGER)
        schema_editor.execute(
            "ALTER FUNCTION corroborate_ledger_chain() SET plan_cache_mode = force_custom_plan"
        )
        schema_editor.execute("DROP FUNCTION IF EXISTS corroborate_ledger_chain_pending(bigint, boolean)")


class Migration(migrations.Migration):
    dependencies = [
        ("verification", "0005_answer_volunteer_time"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
