"""A Redis cache that fails open: when Redis is down, rate limits stop counting instead of failing requests."""

from __future__ import annotations

import logging
from typing import Any

from django.core.cache.backends.redis import RedisCache

logger = logging.getLogger("corroborate.cache")


class ResilientRedisCache(RedisCache):
    def _safely(self, name: str, default: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return getattr(super(), name)(*args, **kwargs)
        except (
            Exception
        ) as exc:  # redis.ConnectionError, TimeoutError, ...: the cache is an optimisation only
            logger.warning("cache unavailable", extra={"operation": name, "error": type(exc).__name__})
            return default

    def get(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        return self._safely("get", default, key, default, version)

    def set(self, key: Any, value: Any, timeout: Any = None, version: int | None = None) -> None:
        self._safely("set", None, key, value, timeout, version)

    def add(self, key: Any, value: Any, timeout: Any = None, version: int | None = None) -> bool:
        return bool(self._safely("add", False, key, value, timeout, version))

    def delete(self, key: Any, version: int | None = None) -> bool:
        return bool(self._safely("delete", False, key, version))

    def incr(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        return int(self._safely("incr", 0, key, delta, version))
