"""The model registry contract: names, versions, aliases and metadata, kept with the job records.

A training job with a ``model_name`` registers its model as the name's next version in the same
transaction that records the job SUCCEEDED (``JobStore.record``), so versions are allocated once
per job, in order, with no gaps, however many gateways record at once. Version numbers are never
reused: deleting version 3 leaves 1, 2 and 4, and ``NAME/3`` is NOT_FOUND from then on.

Every model a training job made is in the registry's index, named or not: its entry holds the
model's owner (the job's) and when it was registered, and ``ListModels`` pages through that index,
newest first, reading no more manifests than the page shows. Models stored before the index
existed are added once by ``adopt``. A name belongs to the token that claimed it first
(``claim_name``, when a training job naming it is accepted), or, for a name registered without a
claim, the owner of the job that registered its first version.

The registry never reads storage; the gateway joins its entries with the model manifests.
"""

from __future__ import annotations

import abc
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from mlgate.errors import FailedPrecondition, InvalidField, NotFound
from mlgate.refs import ModelRef
from mlgate.v1 import jobs_pb2

__all__ = [
    "MAX_DESCRIPTION",
    "MAX_TAGS",
    "AliasChange",
    "ModelRegistry",
    "Registration",
    "RegistryEntry",
    "Route",
    "Target",
    "aliased",
    "merge_tags",
    "ordered",
    "primary",
    "stamp_version",
    "to_register",
    "unknown",
]

MAX_DESCRIPTION = 1024
MAX_TAGS = 64
_MAX_TAG_VALUE = 256
_TAG_KEY = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


@dataclass(frozen=True)
class RegistryEntry:
    """What the registry knows of one model; an unnamed model without metadata has only its id."""

    model_id: str
    name: str = ""
    version: int = 0
    #: The aliases that point at this version, route to it or shadow to it.
    aliases: tuple[str, ...] = ()
    description: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    #: The name of the token whose job made the model; "" when unknown (made on a gateway
    #: without tokens, or before owners were recorded).
    owner: str = ""
    #: When the index took the model in (ns since the epoch); 0 for a model not in the index.
    created_ns: int = 0


@dataclass(frozen=True)
class Registration:
    """A model a training job just made, as the index takes it in."""

    model_id: str
    #: The name it becomes the next version of; "" for an unnamed model.
    name: str
    owner: str
    created_ns: int


@dataclass(frozen=True)
class Route:
    """One version of a weighted alias and its share of the requests, in percent."""

    version: int
    weight: int
    model_id: str = ""


@dataclass(frozen=True)
class Target:
    """What a reference means now: the model it resolves to (for a weighted alias, its heaviest
    route), and through an alias, the alias's routes (empty for one version) and shadow."""

    model_id: str
    name: str = ""
    version: int = 0
    routes: tuple[Route, ...] = ()
    shadow_version: int = 0
    shadow_model_id: str = ""


@dataclass(frozen=True)
class AliasChange:
    """An alias as it is after ``set_alias``, and the version it pointed at before (0: new);
    ``version`` is a weighted alias's heaviest route."""

    name: str
    alias: str
    version: int
    model_id: str
    previous_version: int
    routes: tuple[Route, ...] = ()
    shadow_version: int = 0
    shadow_model_id: str = ""


def ordered(routes: Iterable[Route]) -> tuple[Route, ...]:
    """Routes in version order, as they are stored and split 0..99 (``server.routing``)."""
    return tuple(sorted(routes, key=lambda route: route.version))


def primary(routes: Sequence[Route]) -> Route:
    """The route a weighted alias stands for where one version is asked for: the heaviest, the
    lowest version among equals."""
    return min(routes, key=lambda route: (-route.weight, route.version))


def to_register(job: jobs_pb2.Job) -> Registration | None:
    """The model ``job`` made, if it just succeeded as a training job."""
    if (
        job.kind != jobs_pb2.JOB_KIND_TRAIN
        or job.state != jobs_pb2.JOB_STATE_SUCCEEDED
        or not job.last_event.train_result.model_id
    ):
        return None
    # The worker's clock when the job succeeded, which is when its model was saved.
    created = job.update_time.ToNanoseconds() or time.time_ns()
    return Registration(
        job.last_event.train_result.model_id, job.train.model_name, job.owner, created
    )


def stamp_version(job: jobs_pb2.Job, name: str, version: int) -> None:
    """Put the registered name and version into the job's terminal event, which is recorded."""
    job.last_event.train_result.model_name = name
    job.last_event.train_result.model_version = version


def unknown(ref: ModelRef, name_exists: bool) -> NotFound:
    """The NOT_FOUND for a name reference that resolved to nothing."""
    if not name_exists:
        return NotFound(f"no model is named {ref.name!r}")
    if ref.version:
        return NotFound(f"model {ref.name!r} has no version {ref.version}")
    if ref.alias:
        return NotFound(f"model {ref.name!r} has no alias {ref.alias!r}")
    return NotFound(f"model {ref.name!r} has no versions (none registered yet, or all deleted)")


def aliased(model_id: str, name: str, version: int, aliases: Sequence[str]) -> FailedPrecondition:
    """The refusal to delete a version that aliases point at."""
    which = ", ".join(f"{name}@{alias}" for alias in sorted(aliases))
    return FailedPrecondition(
        f"model {model_id} is {name}/{version}, which {which} point(s) at; move the alias first, "
        "or delete with force to remove the alias too"
    )


def merge_tags(
    current: Mapping[str, str], set_tags: Mapping[str, str], remove_tags: Iterable[str]
) -> dict[str, str]:
    """``current`` with ``set_tags`` applied, then ``remove_tags`` removed; checks every key and
    value and the count."""
    tags = dict(current)
    for key, value in set_tags.items():
        if not _TAG_KEY.fullmatch(key):
            raise InvalidField(
                f"set_tags[{key[:40]!r}]",
                "tag keys are lowercase letters, digits, '-', '_' and '.', at most 64",
            )
        if len(value) > _MAX_TAG_VALUE:
            raise InvalidField(f"set_tags[{key!r}]", f"is over {_MAX_TAG_VALUE} characters")
        tags[key] = value
    for key in remove_tags:
        if key in set_tags:
            raise InvalidField("remove_tags", f"{key[:40]!r} is also in set_tags")
        tags.pop(key, None)
    if len(tags) > MAX_TAGS:
        raise InvalidField("set_tags", f"a model has at most {MAX_TAGS} tags")
    return tags


class ModelRegistry(abc.ABC):
    """Names, versions, aliases and metadata of models. Blocking and thread-safe; every write
    is one transaction, shared by every gateway on the same job store."""

    def resolve(self, ref: ModelRef) -> str:
        """The model id a name reference means now (an id reference is returned as it is);
        raises NotFound for an unknown name, version or alias."""
        return ref.model_id or self.target(ref).model_id

    @abc.abstractmethod
    def target(self, ref: ModelRef) -> Target:
        """What a name reference means now, in one read of the store (so an alias's routes are
        all old or all new); raises NotFound for an unknown name, version or alias. An id
        reference gives a bare target."""

    @abc.abstractmethod
    def entries(self, model_ids: Sequence[str]) -> dict[str, RegistryEntry]:
        """Every given model's entry, by id (a bare entry for models the registry has not seen)."""

    def entry(self, model_id: str) -> RegistryEntry:
        return self.entries([model_id])[model_id]

    @abc.abstractmethod
    def versions(self, name: str) -> list[RegistryEntry]:
        """The name's registered versions, highest first; empty for an unknown name."""

    @abc.abstractmethod
    def page(self, limit: int, before: tuple[int, str] | None) -> list[RegistryEntry]:
        """Up to ``limit`` models of the index, newest first (by ``created_ns``, then id),
        those after the cursor ``before`` (a (created_ns, model id) an earlier page ended at);
        one read of the index, whatever its size."""

    @abc.abstractmethod
    def claim_name(self, name: str, owner: str) -> str:
        """Claim an unclaimed name for ``owner``, atomically; the name's owner afterwards (someone
        else's if another claimed it first, "" for a name from before owners were recorded)."""

    @abc.abstractmethod
    def adopted(self) -> bool:
        """Whether the models stored before the index existed have been added to it."""

    @abc.abstractmethod
    def adopt(self, stored: Sequence[tuple[str, int]]) -> None:
        """Add stored models, (model id, created ns), that the index lacks, without an owner
        (one the index lists keeps its entry; one the registry knew only by its name or
        metadata gets its created time), and remember that adoption is done."""

    @abc.abstractmethod
    def set_alias(
        self,
        name: str,
        alias: str,
        version: int,
        routes: Sequence[Route] = (),
        shadow_version: int = 0,
    ) -> AliasChange:
        """Point ``name@alias`` at ``version``, or (``version`` 0) at weighted ``routes`` (checked
        by the caller: distinct versions, weights summing to 100), with an optional shadow
        version, creating or replacing it in one write; raises NotFound for a version that is not
        registered. Routes are kept in version order."""

    @abc.abstractmethod
    def delete_alias(self, name: str, alias: str) -> None:
        """Remove ``name@alias``; raises NotFound if there is no such alias."""

    @abc.abstractmethod
    def update(
        self,
        model_id: str,
        description: str | None,
        set_tags: Mapping[str, str],
        remove_tags: Sequence[str],
    ) -> RegistryEntry:
        """Set the description (when not None) and change tags (see ``merge_tags``)."""

    @abc.abstractmethod
    def forget(self, model_id: str, *, force: bool) -> RegistryEntry:
        """Remove the model's version, metadata and (with ``force``) the aliases pointing at it
        (routing to it, or shadowing to it); returns the entry as it was. Raises
        FailedPrecondition if aliases point at it and ``force`` is not set, leaving everything as
        it was."""
