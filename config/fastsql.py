"""Plain SQL for the statements on the volunteer hot path (next task, answer), with the ORM's conversions.

The ORM compiles every query anew. On the two requests volunteers make most, profiling showed compiling
(filters, select_related, upserts) costing several times the CPU that PostgreSQL took to run the statements,
and that CPU is what limits answers per second on a small machine. These helpers build each statement's
SQL once per model and field list and convert values with the fields' own methods, so values go in and
come out exactly as through the ORM, on PostgreSQL and on SQLite. Everything else keeps using the ORM.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, TypeVar

from django.db import connection, models

M = TypeVar("M", bound=models.Model)


def qn(name: str) -> str:
    return connection.ops.quote_name(name)


def table(model: type[models.Model]) -> str:
    return _table(connection.vendor, model)


@cache
def _table(vendor: str, model: type[models.Model]) -> str:
    return qn(model._meta.db_table)


@cache
def _field(model: type[models.Model], name: str) -> models.Field:  # type: ignore[type-arg]
    return model._meta.get_field(name)  # type: ignore[return-value]


def col(field: models.Field) -> str:  # type: ignore[type-arg]
    return qn(str(field.column))


def column(model: type[models.Model], name: str) -> str:
    """The quoted column of a model field (by name or attname)."""
    return col(model._meta.get_field(name))  # type: ignore[arg-type]


@cache
def _fields(model: type[models.Model], names: tuple[str, ...] | None) -> tuple[models.Field, ...]:  # type: ignore[type-arg]
    if names is None:
        return tuple(model._meta.concrete_fields)
    return tuple(model._meta.get_field(n) for n in names)  # type: ignore[misc]


@cache
def _loaded_fields(model: type[models.Model], names: tuple[str, ...] | None) -> tuple[models.Field, ...]:  # type: ignore[type-arg]
    """The fields `columns` selects and `load` reads: in the model's order, which Model.from_db expects."""
    wanted = _fields(model, names)
    return tuple(f for f in model._meta.concrete_fields if f in wanted)


def columns(model: type[models.Model], alias: str, names: Sequence[str] | None = None) -> str:
    """`alias.col, ...` for the model's concrete fields (or the named ones), in the order `load` expects."""
    return _columns(connection.vendor, model, alias, tuple(names) if names else None)


@cache
def _columns(vendor: str, model: type[models.Model], alias: str, names: tuple[str, ...] | None) -> str:
    return ", ".join(f"{alias}.{col(f)}" for f in _loaded_fields(model, names))


@cache
def _converters(
    vendor: str, model: type[models.Model], names: tuple[str, ...] | None
) -> tuple[tuple[str, ...], tuple[tuple[Any, ...], ...], tuple[models.Field, ...]]:  # type: ignore[type-arg]
    fields = _loaded_fields(model, names)
    converters = tuple(
        tuple(connection.ops.get_db_converters(f.cached_col)) + tuple(f.get_db_converters(connection))
        for f in fields
    )
    return tuple(f.attname for f in fields), converters, fields


def convert(model: type[models.Model], name: str, value: Any) -> Any:
    """One column's database value as the ORM would return it."""
    _, converters, fields = _converters(connection.vendor, model, (name,))
    for converter in converters[0]:
        value = converter(value, fields[0].cached_col, connection)
    return value


def load(
    model: type[M], row: Sequence[Any], start: int = 0, names: Sequence[str] | None = None
) -> tuple[M, int]:
    """A model instance from `row[start:]` (columns as `columns` listed them); returns it and the next index."""
    attnames, converters, fields = _converters(connection.vendor, model, tuple(names) if names else None)
    values = []
    for offset, (field, field_converters) in enumerate(zip(fields, converters, strict=True)):
        value = row[start + offset]
        for converter in field_converters:
            value = converter(value, field.cached_col, connection)
        values.append(value)
    return model.from_db(connection.alias, list(attnames), values), start + len(fields)


def prep(model: type[models.Model], name: str, value: Any) -> Any:
    """A value as the database expects it for this field (JSON, UUID, aware datetimes...)."""
    return _field(model, name).get_db_prep_save(value, connection)


def run(cursor: Any, sql: str, params: Iterable[Any], *, custom_plan: bool = False) -> None:
    """``cursor.execute(sql, params)``; with ``custom_plan``, on PostgreSQL, never as a prepared statement.

    Connections prepare the statements they run again and again (psycopg server-side binding), and
    PostgreSQL then reuses one generic plan for them (``plan_cache_mode=auto``), which saves planning
    (perf, load benchmark: planning was a third of PostgreSQL's CPU when every statement was re-planned).
    That suits lookups by key. A statement whose best plan depends on the values and on how big the tables
    have grown (the next-task walk, a volunteer's answer counts, a task's answers) is sent unprepared
    instead, so it is planned for its own values every time, as it was before the generic plans.
    Execute wrappers and Django's error translation still apply.
    """
    params = list(params)
    if not custom_plan or connection.vendor != "postgresql":
        cursor.execute(sql, params)
        return

    def unprepared(sql: str, params: Any, many: bool, context: dict[str, Any]) -> Any:
        connection.validate_no_broken_transaction()
        with connection.wrap_database_errors:
            return context["cursor"].cursor.execute(sql, params, prepare=False)

    cursor._execute_with_wrappers(sql, params, many=False, executor=unprepared)


def no_disk_wait() -> str:
    """A select-list item that makes the current transaction commit without waiting for its WAL to reach
    the disk (``set_config(..., true)`` is SET LOCAL), riding on a statement the caller sends anyway:
    PostgreSQL only, empty elsewhere. Only for writes that may be lost in a crash and redone."""
    return "set_config('synchronous_commit', 'off', true)" if connection.vendor == "postgresql" else ""


def fetch_one(sql: str, params: Iterable[Any], *, custom_plan: bool = False) -> tuple[Any, ...] | None:
    with connection.cursor() as cursor:
        run(cursor, sql, params, custom_plan=custom_plan)
        row = cursor.fetchone()
    return tuple(row) if row is not None else None


def execute(sql: str, params: Iterable[Any]) -> int:
    """Run a statement; returns the number of rows it changed."""
    with connection.cursor() as cursor:
        cursor.execute(sql, list(params))
        return int(cursor.rowcount)


@cache
def _insert_sql(
    vendor: str,
    model: type[models.Model],
    names: tuple[str, ...],
    conflict: tuple[str, ...],
    update: tuple[str, ...],
) -> str:
    fields = _fields(model, names)
    sql = (
        f"INSERT INTO {table(model)} ({', '.join(col(f) for f in fields)})"
        f" VALUES ({', '.join(['%s'] * len(fields))})"
    )
    if conflict:
        targets = ", ".join(col(f) for f in _fields(model, conflict))
        sets = ", ".join(f"{col(f)} = EXCLUDED.{col(f)}" for f in _fields(model, update))
        sql += f" ON CONFLICT ({targets}) DO UPDATE SET {sets}"
    return sql


def insert(
    model: type[models.Model],
    values: dict[str, Any],
    *,
    conflict: Sequence[str] = (),
    update: Sequence[str] = (),
    returning: Sequence[str] = (),
) -> tuple[Any, ...] | None:
    """INSERT one row (an upsert with `conflict` and `update`); returns the `returning` columns, converted.

    Both PostgreSQL and SQLite (3.35 and later) accept this ON CONFLICT ... DO UPDATE and RETURNING.
    """
    sql, params = _insert_statement(model, values, conflict, update)
    if not returning:
        execute(sql, params)
        return None
    row = fetch_one(f"{sql} RETURNING {', '.join(col(f) for f in _fields(model, tuple(returning)))}", params)
    assert row is not None
    return tuple(convert(model, name, value) for name, value in zip(returning, row, strict=True))


def _insert_statement(
    model: type[models.Model], values: dict[str, Any], conflict: Sequence[str], update: Sequence[str]
) -> tuple[str, list[Any]]:
    """The INSERT (or upsert) of one row of these field values, without RETURNING, and its parameters."""
    sql = _insert_sql(connection.vendor, model, tuple(values), tuple(conflict), tuple(update))
    return sql, [prep(model, name, value) for name, value in values.items()]


def insert_instance(
    instance: M, *, conflict: Sequence[str] = (), update: Sequence[str] = (), durable: bool = True
) -> M:
    """INSERT a new model instance's fields as they are (an upsert with `conflict` and `update`): no
    save() hooks and no auto_now, so set every value first. Sets its primary key and returns it.

    ``durable=False``, outside any transaction (autocommit), makes the row's own transaction commit
    without waiting for the disk on PostgreSQL (``no_disk_wait``): only for a row whose loss in a crash
    loses nothing else. Any later commit that waits for the disk (an answer) flushes it first, since the
    log is written in order. Inside a transaction it changes nothing: the caller's commit decides.
    """
    write = insert_write(instance, conflict=conflict, update=update)
    if durable or connection.in_atomic_block or not no_disk_wait():
        (instance.pk,) = write_together([write])
    else:
        row = fetch_one(f"{write.sql} RETURNING {write.returning}, {no_disk_wait()}", write.params)
        assert row is not None
        instance.pk = row[0]
    instance._state.adding = False
    return instance


def insert_values_without_disk_wait(model: type[models.Model], values: dict[str, Any]) -> None:
    """INSERT one row of these field values in a transaction of its own that commits without waiting for
    the disk on PostgreSQL (see `insert_instance`'s ``durable=False``); a plain INSERT elsewhere, or inside
    a transaction. Raises IntegrityError as the ORM would."""
    sql, params = _insert_statement(model, values, (), ())
    if not connection.in_atomic_block and no_disk_wait():
        sql += f" RETURNING {no_disk_wait()}"
    execute(sql, params)


def update(model: type[models.Model], pk: Any, values: dict[str, Any]) -> int:
    """UPDATE one row by primary key with these field values; returns the number of rows changed (0 or 1)."""
    write = update_write(model, pk, values)
    return execute(write.sql, write.params)


# ---------------------------------------------------------------- several writes, one round trip


@dataclass(frozen=True)
class Write:
    """One INSERT, UPDATE or DELETE for `write_together`, without RETURNING; `returning` is the column
    (SQL, quoted) whose value in the statement's first row `write_together` returns."""

    sql: str
    params: list[Any]
    returning: str | None = None


def insert_write(
    instance: models.Model, *, conflict: Sequence[str] = (), update: Sequence[str] = ()
) -> Write:
    """`insert_instance`'s INSERT (or upsert) as a Write returning the new primary key."""
    model = type(instance)
    values = {
        f.attname: getattr(instance, f.attname) for f in model._meta.concrete_fields if not f.primary_key
    }
    return Write(*_insert_statement(model, values, conflict, update), col(model._meta.pk))  # type: ignore[arg-type]


def update_write(model: type[models.Model], pk: Any, values: dict[str, Any]) -> Write:
    """`update`'s UPDATE as a Write."""
    names = list(values)
    return Write(
        f"UPDATE {table(model)} SET {', '.join(f'{column(model, n)} = %s' for n in names)}"
        f" WHERE {col(model._meta.pk)} = %s",  # type: ignore[arg-type]
        [*(prep(model, n, values[n]) for n in names), pk],
    )


def write_together(writes: Sequence[Write]) -> list[Any]:
    """Run several writes, in one round trip on PostgreSQL; returns each one's `returning` value (None when
    it asked for none or changed no row).

    On PostgreSQL they are the WITH queries of one statement, which runs them all to completion: they see
    the database as it was before the statement, so none may read what another writes or change the same
    row, and an error in one (a unique constraint, say) fails them all, as it fails the caller's
    transaction anyway. Elsewhere (SQLite), or alone, they run one after another, with the same results. Every
    round trip saved is one less wait between gunicorn and PostgreSQL while the answer holds its task's lock.
    """
    if connection.vendor != "postgresql" or len(writes) == 1:
        results: list[Any] = []
        for write in writes:
            if write.returning is None:
                execute(write.sql, write.params)
                results.append(None)
            else:
                row = fetch_one(f"{write.sql} RETURNING {write.returning}", write.params)
                results.append(row[0] if row else None)
        return results
    parts, params, values = [], [], []
    for i, write in enumerate(writes):
        parts.append(f"w{i} AS ({write.sql}{f' RETURNING {write.returning}' if write.returning else ''})")
        params += write.params
        values.append(f"(SELECT {write.returning} FROM w{i} LIMIT 1)" if write.returning else "NULL")
    row = fetch_one(f"WITH {', '.join(parts)} SELECT {', '.join(values)}", params)
    assert row is not None
    return list(row)
