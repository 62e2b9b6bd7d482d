"""The Redis job store: job records shared by several gateways (``MLGATE_STORE_URL=redis://...``).

Keys, under a namespace (``?namespace=`` in the URL, else the gateway's MLGATE_NAMESPACE, whose
default is ``mlgate``):

    {ns}:job:{id}                        the Job record, without prediction rows (serialized)
    {ns}:job:{id}:rows                   a prediction's rows (a serialized PredictRequest)
    {ns}:job:{id}:events                 hash: seq -> JobEvent (serialized protobuf)
    {ns}:jobs                            index of all jobs but TRIAL and SHARD ones (see below)
    {ns}:jobs:kind:{k}                   index of one kind
    {ns}:jobs:state:{s}                  index of one state (TRIAL and SHARD jobs left out)
    {ns}:jobs:kind:{k}:state:{s}         index of one kind in one state
    {ns}:jobs:parent:{id}                index of one SEARCH or SCORE job's children
    {ns}:jobs:expiry                     finished jobs by the time they may be deleted
    {ns}:jobs:unpublished                the outbox: job ids by the time of their mark (or claim)

Indexes are sorted sets whose members all have score 0 and read ``{create_ns:020d}:{id}``, so
lexicographic order is (create time, id) order exactly (nanoseconds do not fit a float score)
and a page is one ZREVRANGEBYLEX from the page token's keyset cursor; the oldest QUEUED job of a
kind is the first member of its kind-and-state index. Every change of a record and its indexes
happens in one MULTI under WATCH of the record, so concurrent gateways never lose or half-apply
an update.

A listing without a kind reads an index that holds no TRIAL or SHARD jobs (``redis_keys``), so
a search's trials are never read and dropped on the way to a user's jobs.

Finished jobs are deleted, with their rows, events and index entries (a child's parent index
entry too; an index left empty is gone with it), ``retention`` seconds after
they end (``MLGATE_JOB_RETENTION``, or ``?retention=`` in the URL; ``0`` keeps them forever), up to
10,000 jobs per sweep.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable, Sequence
from typing import Any, ParamSpec, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
from google.protobuf.timestamp_pb2 import Timestamp
from redis.client import Pipeline

from mlgate.events import is_terminal
from mlgate.redis_client import redis_client
from mlgate.store_errors import JobStoreError, JobStoreUnavailable
from mlgate.v1 import jobs_pb2
from server.jobstore.base import (
    DEFAULT_RETENTION,
    JobStore,
    Recorded,
    SweepSchedule,
    apply_event,
    number_cancel,
    recorded,
    timestamp,
)
from server.jobstore.records import split_rows, summary, with_rows
from server.jobstore.redis_keys import Keys, expiry_entry, member, parse_expiry_entry
from server.jobstore.redis_registry import RedisModelRegistry
from server.paging import decode_page_token, encode_page_token

__all__ = ["RedisJobStore"]

T = TypeVar("T")
P = ParamSpec("P")

_SWEEP_BATCH = 200
_SWEEP_MAX_BATCHES = 50
_MAX_TRANSACTION_TRIES = 100
# Claims the outbox's due ids and renews their marks in one atomic step: two gateways claiming
# at once never get the same id. KEYS[1] the outbox; ARGV: due at or before, limit, now.
_CLAIM = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, id in ipairs(due) do
    redis.call('ZADD', KEYS[1], 'XX', ARGV[3], id)
end
return due
"""


class RedisJobStore(JobStore):
    """Job records in Redis; every method is one or a few round trips on a shared pool."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        namespace: str = "mlgate",
        retention: float = DEFAULT_RETENTION,
    ) -> None:
        self._client = client
        self._keys = Keys(namespace)
        self._sweeps = SweepSchedule(retention)
        self._registry = RedisModelRegistry(client, namespace, self._call, self._transact)
        self._claim = client.register_script(_CLAIM)

    @classmethod
    def from_url(
        cls,
        url: str,
        namespace: str = "mlgate",
        *,
        ca_file: str | None = None,
        retention: float = DEFAULT_RETENTION,
    ) -> RedisJobStore:
        """``redis://[:password@]host:port/db[?namespace=NS&retention=seconds]``, or
        ``rediss://`` for TLS, trusting ``ca_file`` when given; a retention in the URL wins
        over ``retention``. Without ``namespace=`` in the URL, keys go under ``namespace`` (the
        gateway's MLGATE_NAMESPACE)."""
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        namespace = query.pop("namespace", namespace)
        retention = float(query.pop("retention", retention))
        client = redis_client(urlunsplit(parts._replace(query=urlencode(query))), ca_file=ca_file)
        return cls(client, namespace=namespace, retention=retention)

    def __repr__(self) -> str:
        kwargs = self._client.connection_pool.connection_kwargs
        where = f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"
        return f"RedisJobStore({where!r}, namespace={self._keys.ns!r})"

    def _call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn`` with redis' errors translated at this one boundary."""
        try:
            return fn(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError, redis.ReadOnlyError) as exc:
            # Down, hung, still loading its data, or a replica after a failover: all pass.
            raise JobStoreUnavailable(f"the Redis job store is unreachable: {exc}") from exc
        except redis.RedisError as exc:
            raise JobStoreError(f"the Redis job store failed: {exc}") from exc

    def _transact(self, key: str, write: Callable[[Pipeline], T]) -> T:
        """Run ``write`` (reads, then ``multi()`` and queued writes) under WATCH of ``key``,
        again if another gateway changed ``key`` meanwhile."""
        with self._client.pipeline(transaction=True) as pipe:
            for _ in range(_MAX_TRANSACTION_TRIES):
                try:
                    pipe.watch(key)  # type: ignore[no-untyped-call]
                    result = write(pipe)
                    pipe.execute()
                    return result
                except redis.WatchError:
                    continue
        raise JobStoreUnavailable(f"the Redis job store kept changing {key} under this update")

    # -- writes ------------------------------------------------------------------------------

    def create_if_absent(self, job: jobs_pb2.Job) -> bool:
        key = self._keys.job(job.id)
        record, rows = split_rows(job)

        def write(pipe: Pipeline) -> bool:
            # Under WATCH: a job created by another gateway meanwhile fails this MULTI, and
            # the next try finds it.
            if pipe.exists(key):
                return False
            pipe.multi()
            pipe.set(key, record.SerializeToString())
            if rows:
                pipe.set(self._keys.rows(job.id), rows)
            pipe.hset(
                self._keys.events(job.id),
                str(job.last_event.seq),
                job.last_event.SerializeToString(),
            )
            for index in self._keys.indexes(job.kind, job.state, job.parent_job_id):
                pipe.zadd(index, {member(job): 0})
            pipe.zadd(self._keys.unpublished, {job.id: time.time()})
            self._expire_if_ended(pipe, job)
            return True

        return self._call(self._transact, key, write)

    @property
    def registry(self) -> RedisModelRegistry:
        return self._registry

    def record(self, event: jobs_pb2.JobEvent) -> Recorded | None:
        updated = self._update(event.job_id, lambda _job: event)
        return None if updated is None else recorded(*updated)

    def cancel(self, job_id: str, event: jobs_pb2.JobEvent) -> jobs_pb2.Job | None:
        updated = self._update(job_id, lambda job: number_cancel(job, event), keep_unchanged=True)
        return None if updated is None else summary(updated[0])

    def _update(
        self,
        job_id: str,
        make_event: Callable[[jobs_pb2.Job], jobs_pb2.JobEvent],
        *,
        keep_unchanged: bool = False,
    ) -> tuple[jobs_pb2.Job, int] | None:
        """Apply an event to a job atomically; the whole job if changed (or, with
        ``keep_unchanged``, if it exists at all), with the seq its log ended at before."""
        key = self._keys.job(job_id)

        def write(pipe: Pipeline) -> tuple[jobs_pb2.Job, int] | None:
            raw: Any = pipe.get(key)
            if raw is None:
                return None
            job = jobs_pb2.Job.FromString(raw)
            before, after = job.state, job.last_event.seq
            event = make_event(job)
            if not apply_event(job, event):
                return (job, after) if keep_unchanged else None
            # The version is allocated in the transaction that ends the job, so exactly once.
            register = self._registry.prepare_registration(pipe, job)
            pipe.multi()
            pipe.set(key, job.SerializeToString())
            # Keyed by the last event's seq: an event that only raised the attempt adds nothing.
            pipe.hsetnx(
                self._keys.events(job_id),
                str(job.last_event.seq),
                job.last_event.SerializeToString(),
            )
            if register is not None:
                register(pipe)
            pipe.zrem(self._keys.unpublished, job_id)
            if job.state != before:
                leaves, joins = self._keys.moved(job.kind, before, job.state)
                for index in leaves:
                    pipe.zrem(index, member(job))
                for index in joins:
                    pipe.zadd(index, {member(job): 0})
            self._expire_if_ended(pipe, job)
            return job, after

        updated = self._call(self._transact, key, write)
        self._sweeps.run_if_due(self._sweep, (redis.RedisError,))
        return updated

    def _expire_if_ended(self, pipe: Pipeline, job: jobs_pb2.Job) -> None:
        if self._sweeps.retention > 0 and is_terminal(job.state):
            entry = expiry_entry(job)
            pipe.zadd(self._keys.expiry, {entry: time.time() + self._sweeps.retention})

    def _sweep(self) -> None:
        """Delete finished jobs past their retention, with their events and index entries."""
        for _ in range(_SWEEP_MAX_BATCHES):
            due: Any = self._client.zrangebyscore(
                self._keys.expiry, "-inf", time.time(), 0, _SWEEP_BATCH
            )
            if not due:
                return
            with self._client.pipeline(transaction=True) as pipe:
                for raw in due:
                    entry = raw.decode()
                    kind, state, indexed, parent = parse_expiry_entry(entry)
                    job_id = indexed.split(":", 1)[1]
                    pipe.delete(
                        self._keys.job(job_id), self._keys.rows(job_id), self._keys.events(job_id)
                    )
                    for index in self._keys.indexes(kind, state, parent):
                        pipe.zrem(index, indexed)
                    pipe.zrem(self._keys.expiry, entry)
                pipe.execute()
            if len(due) < _SWEEP_BATCH:
                return

    def mark_published(self, job_ids: Sequence[str]) -> None:
        if job_ids:
            self._call(self._client.zrem, self._keys.unpublished, *job_ids)

    def claim_unpublished(
        self, older_than_seconds: float, limit: int
    ) -> builtins.list[jobs_pb2.Job]:
        now = time.time()
        args = [now - older_than_seconds, limit, now]
        claimed: Any = self._call(self._claim, keys=[self._keys.unpublished], args=args)
        if not claimed:
            return []
        ids = [raw.decode() for raw in claimed]
        keys = [key for job_id in ids for key in (self._keys.job(job_id), self._keys.rows(job_id))]
        found: Any = self._call(self._client.mget, keys)
        jobs, gone = [], []
        for job_id, raw, rows in zip(ids, found[::2], found[1::2], strict=True):
            if raw is None:  # deleted meanwhile: nothing left to publish
                gone.append(job_id)
            else:
                jobs.append(with_rows(jobs_pb2.Job.FromString(raw), rows))
        self.mark_published(gone)
        return jobs

    # -- reads -------------------------------------------------------------------------------

    def get(self, job_id: str) -> jobs_pb2.Job | None:
        found: Any = self._call(
            self._client.mget, [self._keys.job(job_id), self._keys.rows(job_id)]
        )
        raw, rows = found
        return None if raw is None else with_rows(jobs_pb2.Job.FromString(raw), rows)

    def children(self, parent_job_id: str) -> builtins.list[jobs_pb2.Job]:
        members: Any = self._call(self._client.zrange, self._keys.children(parent_job_id), 0, -1)
        ids = [m.decode().split(":", 1)[1] for m in members]
        keys = [key for job_id in ids for key in (self._keys.job(job_id), self._keys.rows(job_id))]
        found: Any = self._call(self._client.mget, keys) if keys else []
        # A child deleted between the two reads is left out, as if read a moment later.
        return [
            with_rows(jobs_pb2.Job.FromString(raw), rows)
            for raw, rows in zip(found[::2], found[1::2], strict=True)
            if raw is not None
        ]

    def list(
        self, *, kind: int, state: int, page_size: int, page_token: str, parent_job_id: str = ""
    ) -> tuple[builtins.list[jobs_pb2.Job], str]:
        # A parent's children are few enough to filter by kind and state as they are read.
        index = (
            self._keys.children(parent_job_id) if parent_job_id else self._keys.index(kind, state)
        )
        upper = "+"
        if page_token:
            create_ns, last_id = decode_page_token(page_token)
            upper = f"({create_ns:020d}:{last_id}"
        jobs: builtins.list[jobs_pb2.Job] = []
        more = False
        # A record deleted (or moved to another state) between reading the index and reading
        # the records is skipped, and the next members fill its place.
        while len(jobs) <= page_size:
            want = page_size + 1 - len(jobs)
            members: Any = self._call(
                self._client.zrevrangebylex, index, upper, "-", start=0, num=want
            )
            if not members:
                break
            keys = [self._keys.job(m.decode().split(":", 1)[1]) for m in members]
            records: Any = self._call(self._client.mget, keys)
            for raw in records:
                if raw is None:
                    continue
                job = jobs_pb2.Job.FromString(raw)
                if (not kind or job.kind == kind) and (not state or job.state == state):
                    jobs.append(summary(job))
            upper = "(" + members[-1].decode()
            if len(members) < want:
                break
        if len(jobs) > page_size:
            jobs, more = jobs[:page_size], True
        token = ""
        if more:
            last = jobs[-1]
            token = encode_page_token(last.create_time.ToNanoseconds(), last.id)
        return jobs, token

    def events(self, job_id: str, after_seq: int) -> builtins.list[jobs_pb2.JobEvent]:
        stored: Any = self._call(self._client.hgetall, self._keys.events(job_id))
        seqs = sorted((int(seq), body) for seq, body in stored.items() if int(seq) > after_seq)
        return [jobs_pb2.JobEvent.FromString(body) for _seq, body in seqs]

    def oldest_queued(self, kind: int) -> Timestamp | None:
        # The kind-and-state index is in (create time, id) order: its first member is the oldest.
        first: Any = self._call(
            self._client.zrange, self._keys.index(kind, jobs_pb2.JOB_STATE_QUEUED), 0, 0
        )
        return timestamp(int(first[0].split(b":", 1)[0])) if first else None

    def ping(self) -> None:
        try:
            self._client.ping()
        except redis.RedisError:
            raise ConnectionError("the job store (redis) is unreachable") from None

    def close(self) -> None:
        self._client.close()
        self._client.connection_pool.disconnect()
