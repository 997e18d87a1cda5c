"""A Redis cache that fails open: when Redis is down, rate limits stop counting and sessions fall back to the
database (cached_db) instead of requests failing."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from django.core.cache.backends.redis import RedisCache, RedisCacheClient

logger = logging.getLogger("corroborate.cache")

# What each operation returns when Redis cannot be reached: a miss, nothing stored, nothing deleted.
_FALLBACKS: dict[str, Callable[..., Any]] = {
    "get": lambda key, default=None, *a, **k: default,
    "get_many": lambda *a, **k: {},
    "has_key": lambda *a, **k: False,
    "set": lambda *a, **k: None,
    "set_many": lambda keys, *a, **k: list(keys),
    "add": lambda *a, **k: False,
    "touch": lambda *a, **k: False,
    "delete": lambda *a, **k: False,
    "delete_many": lambda *a, **k: None,
    "incr": lambda *a, **k: 0,
    "decr": lambda *a, **k: 0,
    "clear": lambda *a, **k: None,
}


def _fail_open(name: str) -> Callable[..., Any]:
    original = getattr(RedisCache, name)

    @functools.wraps(original)
    def method(self: RedisCache, *args: Any, **kwargs: Any) -> Any:
        try:
            return original(self, *args, **kwargs)
        except Exception as exc:  # redis ConnectionError, TimeoutError...: the cache is an optimisation only
            logger.warning("cache unavailable", extra={"operation": name, "error": type(exc).__name__})
            return _FALLBACKS[name](*args, **kwargs)

    return method


class ReusedClientRedisCacheClient(RedisCacheClient):
    """Keeps one redis client per connection pool: Django builds a new one on every cache call (~0.5 ms),
    and a volunteer request makes several (session, rate limits). Clients are thread-safe over their pool."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[int, Any] = {}

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        # django-stubs leave out these private helpers of RedisCacheClient.
        base: Any = self
        index = base._get_connection_pool_index(write)
        client = self._clients.get(index)
        if client is None:
            client = self._clients[index] = base._client(connection_pool=base._get_connection_pool(write))
        return client


class ResilientRedisCache(RedisCache):
    def __init__(self, server: Any, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = ReusedClientRedisCacheClient


for _name in _FALLBACKS:
    setattr(ResilientRedisCache, _name, _fail_open(_name))
