"""Every Redis key and consumer-group name the Redis broker uses, in one place.

All keys start with the broker's namespace, so several deployments (or test runs) share one Redis
server without seeing each other, and ``{namespace}:*`` finds everything one of them owns:

    {ns}:queue:{queue}                   work stream (train, predict); group "workers"
    {ns}:queue:{queue}:alive:{consumer}  heartbeat of one consumer of that stream (string, TTL)
    {ns}:dead:{queue}                    dead letters of that queue (stream, trimmed, TTL)
    {ns}:events                          job events (stream, trimmed); group "gateways"
    {ns}:events:alive:{consumer}         heartbeat of one gateway's event consumer
    {ns}:workers                         workers' heartbeats (stream, trimmed), read by the gateways
    {ns}:requests:{queue}                inference requests (list; expires while unused)
    {ns}:replies:{requester}             replies to one requester (list; expires while unused)
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["EVENT_GROUP", "RELEASED_CONSUMER", "WORK_GROUP", "Keys"]

#: The consumer group every worker joins on each work stream.
WORK_GROUP = "workers"
#: The consumer group every gateway joins on the events stream.
EVENT_GROUP = "gateways"
#: A consumer that never runs: a stopping consumer hands its unsettled entries to it, and since
#: it has no heartbeat the next reclaim scan of any live consumer takes them at once.
RELEASED_CONSUMER = "released"


@dataclass(frozen=True)
class Keys:
    """Key names under one namespace."""

    namespace: str

    def __post_init__(self) -> None:
        if not self.namespace or any(c in self.namespace for c in " *?[]{}"):
            raise ValueError(f"invalid Redis namespace {self.namespace!r}")

    def queue(self, queue: str) -> str:
        return f"{self.namespace}:queue:{queue}"

    def dead(self, queue: str) -> str:
        return f"{self.namespace}:dead:{queue}"

    @property
    def events(self) -> str:
        return f"{self.namespace}:events"

    @property
    def heartbeats(self) -> str:
        return f"{self.namespace}:workers"

    def requests(self, queue: str) -> str:
        return f"{self.namespace}:requests:{queue}"

    def replies(self, requester: str) -> str:
        return f"{self.namespace}:replies:{requester}"

    @staticmethod
    def heartbeat(stream: str, consumer: str) -> str:
        return f"{stream}:alive:{consumer}"

    @property
    def pattern(self) -> str:
        """A SCAN pattern matching every key of this namespace."""
        return f"{self.namespace}:*"
