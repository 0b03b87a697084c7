"""The one Redis client of a gateway process.

Built in the lifespan when `state.redis_url` is set, and shared by everything that keeps state
across gateway replicas (rate limits and quotas, stored responses). Every call is bounded: the
socket timeouts come from settings, the pool blocks for at most `state.timeout` for a free
connection, and redis-py's own retries are off, so a slow or dead Redis costs a request at most
about one timeout. What to do when Redis fails (fail open to local state, or fail closed) is the
caller's decision, not this module's.
"""

from __future__ import annotations

import logging

from redis.asyncio import BlockingConnectionPool, Redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from server.settings import StateSettings

log = logging.getLogger("ragway.state")


class SharedState:
    def __init__(self, settings: StateSettings, redis: Redis | None = None):
        self.settings = settings
        self.redis = redis

    @property
    def shared(self) -> bool:
        """Whether state lives in Redis (shared by replicas) rather than in this process."""
        return self.redis is not None

    def key(self, *parts: str) -> str:
        """A Redis key under this deployment's prefix: key("limits", "rpm", tenant)."""
        return self.settings.key_prefix + ":".join(parts)

    async def ping(self) -> bool:
        if self.redis is None:
            return False
        try:
            return bool(await self.redis.ping())
        except (RedisError, OSError) as exc:
            log.warning("redis ping failed: %s", exc)
            return False

    async def aclose(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()


def redis_client(settings: StateSettings) -> Redis | None:
    """A client over a bounded, blocking pool, or None when no Redis is configured."""
    if settings.redis_url is None:
        return None
    pool = BlockingConnectionPool.from_url(
        settings.redis_url.get_secret_value(),
        max_connections=settings.max_connections,
        timeout=settings.timeout,  # wait for a free pooled connection
        socket_timeout=settings.timeout,
        socket_connect_timeout=settings.connect_timeout,
        retry=Retry(NoBackoff(), 0),
    )
    return Redis(connection_pool=pool)


async def open_shared_state(settings: StateSettings) -> SharedState:
    """The shared state for the lifespan. A Redis that does not answer at start is logged, not
    fatal here: each user of it applies its own fail mode, call by call."""
    state = SharedState(settings, redis_client(settings))
    if state.redis is not None and not await state.ping():
        log.warning("redis at state.redis_url does not answer yet; its users apply their fail mode")
    return state
