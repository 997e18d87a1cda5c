"""Rate limits that hold under concurrency, in one cache round trip.

DRF's ``SimpleRateThrottle`` reads a client's request history from the cache, decides, then writes it back.
Requests that arrive together all read the same history, so a script sending twenty requests at once gets
them all through a limit of ten, and every request pays two cache round trips per limit. Here the same
sliding window (at most N requests in any ``duration`` seconds, the same ``Retry-After``) is one Lua script
on Redis, which Redis runs atomically: one round trip, and never more than N. Without Redis (the laptop's
per-process memory cache) DRF's own code runs under a lock, which is exact within the one process.

When Redis cannot be reached the limits stop counting, as the cache does (config/cache.py): volunteers keep
working and the failure is logged.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from typing import Any

from django.core.cache import DEFAULT_CACHE_ALIAS, caches
from django.core.cache.backends.redis import RedisCache
from rest_framework.throttling import SimpleRateThrottle

logger = logging.getLogger("corroborate.throttling")

# KEYS[1] the client's window; ARGV: now, duration, limit, a unique member for this request, key lifetime.
# Entries at or before now - duration leave the window (as in SimpleRateThrottle). Returns whether the
# request is allowed and, when it is not, the time of the oldest request in the window (as a string: Redis
# would cut a Lua number to an integer).
_SLIDING_WINDOW = """
local key = KEYS[1]
local now, duration, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - duration)
if redis.call('ZCARD', key) < limit then
  redis.call('ZADD', key, now, ARGV[4])
  redis.call('EXPIRE', key, tonumber(ARGV[5]))
  return {1, ''}
end
return {0, redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')[2]}
"""

_LOCAL = threading.Lock()


class AtomicRateThrottle(SimpleRateThrottle):
    """``SimpleRateThrottle`` with the decision made atomically (see the module docstring)."""

    def allow_request(self, request: Any, view: Any) -> bool:
        if self.rate is None:
            return True
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        self.now = self.timer()
        self._retry_at: float | None = None
        # SimpleRateThrottle sets these from the rate in __init__; django-stubs' DRF stubs leave them out.
        limit, duration = self.num_requests, self.duration  # type: ignore[attr-defined]
        backend = caches[DEFAULT_CACHE_ALIAS]  # self.cache is a proxy to it
        if not isinstance(backend, RedisCache):
            with _LOCAL:
                return super().allow_request(request, view)
        try:
            allowed, oldest = self._script(backend)(
                keys=[backend.make_key(self.key)],
                # The key outlives its window by a minute: only memory depends on it, never the decision.
                args=[
                    repr(self.now),
                    duration,
                    limit,
                    f"{self.now!r}:{os.urandom(6).hex()}",
                    math.ceil(duration) + 60,
                ],
            )
        except Exception as exc:  # redis ConnectionError, TimeoutError...: fail open, as the cache does
            logger.warning("rate limit not counted", extra={"scope": self.scope, "error": type(exc).__name__})
            return True
        if int(allowed):
            return True
        self._retry_at = float(oldest) + duration
        return False

    def wait(self) -> float | None:
        retry_at = getattr(self, "_retry_at", None)
        if retry_at is None:
            return super().wait()
        return max(0.0, retry_at - self.now)

    @staticmethod
    def _script(backend: RedisCache) -> Any:
        # One client per connection pool (config/cache.py); the script object caches its SHA on it.
        client: Any = backend._cache.get_client(write=True)
        script = getattr(client, "_corroborate_sliding_window", None)
        if script is None:
            script = client._corroborate_sliding_window = client.register_script(_SLIDING_WINDOW)
        return script
