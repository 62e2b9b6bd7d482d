"""The one way mlgate connects to Redis, for the Redis broker and the Redis job store alike.

One retry policy for every connection: a command that fails because its connection is gone
(Redis restarted, a pooled connection gone stale, a server still loading its data) is sent again
on a fresh connection, a few times with jittered backoff under a second in all. Timeouts are not
retried, so a hung Redis costs its caller one socket timeout; longer outages are the caller's to
wait out, with its own deadline.
"""

from __future__ import annotations

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

__all__ = ["RETRIES", "redis_client"]

RETRIES = 3


def redis_client(
    url: str,
    *,
    ca_file: str | None = None,
    timeout: float = 5.0,
    connect_timeout: float = 2.0,
    dedicated: bool = False,
) -> redis.Redis:
    """A client for ``url`` (``redis://`` or ``rediss://``, trusting ``ca_file`` when given).

    A pooled client checks connections idle for 10 s before use; a ``dedicated`` one holds one
    connection of its own, for blocking reads and health checks that must not wait on the pool.
    """
    options: dict[str, object] = {}
    if ca_file and url.startswith("rediss://"):
        options["ssl_ca_certs"] = ca_file
    if dedicated:
        options["single_connection_client"] = True
    else:
        options["health_check_interval"] = 10
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=connect_timeout,
        retry=Retry(
            ExponentialWithJitterBackoff(base=0.05, cap=0.5),
            RETRIES,
            supported_errors=(redis.ConnectionError,),
        ),
        **options,
    )
