"""Session stores that create a newcomer's session in one round trip.

Django's database-backed stores create a session with a lookup first (is this random key taken? a cache
get and a SELECT), then the INSERT in a transaction of its own (BEGIN, INSERT, COMMIT), waiting for the
disk. Every volunteer's first request pays for both, and a campaign announced on television brings
thousands of first requests at once. Here:

- no lookup: 32 characters from 36 leave about 6e49 keys, and the table's primary key refuses a taken one
  anyway; Django's ``create()`` then draws another key, as it does when the lookup loses a race;
- the INSERT is one statement in autocommit that commits without waiting for the disk on PostgreSQL
  (``fastsql.insert_values_without_disk_wait``). A session lost in a crash loses nothing the volunteer
  gave: it only names their pseudonymous volunteer row, which is written the same way just before, and
  their first answer's commit (which waits for the disk) flushes both first, the log being written in
  order. The volunteer would just start again as a newcomer. A session created at login (Django rotates
  the key) is written the same way: lost, the person logs in again; their account is committed before.

Everything else (loading, updating, expiry, the cache) is Django's. ``SessionStore`` is the cached store
when a cache server (Redis) is configured, the plain database store otherwise: a per-process memory
cache would serve other processes' stale sessions.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.sessions.backends import cached_db, db
from django.contrib.sessions.backends.base import VALID_KEY_CHARS, CreateError
from django.db import IntegrityError, connection
from django.utils.crypto import get_random_string

from config import fastsql


class _OneRoundTripCreate(db.SessionStore):
    # Django signs session data with a salt named after the store's class; Django's stores are all called
    # SessionStore, so sessions signed before this store was configured stay readable, and so does
    # Session.get_decoded.
    key_salt = "django.contrib.sessions.SessionStore"

    def _get_new_session_key(self) -> str:
        return get_random_string(32, VALID_KEY_CHARS)

    def save(self, must_create: bool = False) -> None:
        if not must_create or self.session_key is None or connection.in_atomic_block:
            super().save(must_create)
            return
        store: Any = self  # django-stubs leave out the stores' private helpers
        instance = self.create_model_instance(store._get_session(no_load=True))
        values = {
            "session_key": instance.session_key,
            "session_data": instance.session_data,
            "expire_date": instance.expire_date,
        }
        try:
            fastsql.insert_values_without_disk_wait(self.model, values)
        except IntegrityError:
            raise CreateError from None
        self._saved(must_create)

    def _saved(self, must_create: bool) -> None:
        """What the store does after writing the row (the cached store fills its cache)."""


class DatabaseSessionStore(_OneRoundTripCreate):
    pass


class CachedDatabaseSessionStore(_OneRoundTripCreate, cached_db.SessionStore):
    # The slow path is cached_db's save (database, then the cache); the fast path fills the cache here.
    def _saved(self, must_create: bool) -> None:
        store: Any = self
        try:
            store._cache.set(self.cache_key, store._session, self.get_expiry_age())
        except Exception:  # as cached_db: the database holds the session, the cache is an optimisation
            cached_db.logger.exception("Error saving to cache (%s)", store._cache)


SessionStore: Any = CachedDatabaseSessionStore if getattr(settings, "REDIS_URL", "") else DatabaseSessionStore
