"""Weighted aliases: which version of a model answers a request, and what the answer says.

An alias points at one version, or at weighted routes (``3:90 4:10``: integer percentages
summing to 100) and optionally names a shadow version. ``ModelCatalog.route(reference,
routing_key)`` resolves a reference in one read of the job store (uncached, as every resolution:
an alias changed by ``SetModelAlias`` is seen by every request that starts after it returns, on
every gateway) and returns a ``Routed``, the one typed answer every serving path builds on::

    @dataclass(frozen=True)
    class Routed:
        model_id: str         # the model that answers
        name: str             # its name and version ("" and 0 for an unnamed model)
        version: int
        alias: str            # the alias the reference went through; "" for none
        shadow_model_id: str  # the alias's shadow version's model; "" for none
        shadow_version: int   # 0 for none

Choosing a route: the routes, in version order, split 0..99 into consecutive ranges by weight
(``3:90 4:10``: 0-89 to version 3, 90-99 to version 4). A request without a routing key draws a
number at random; one with a key hashes it (BLAKE2b, the same on every gateway and across
restarts, unlike Python's ``hash``) to a number, so the same key lands on the same version while
the weights stand, and moving weight (90/10 to 80/20) moves only the keys in the range that
changed hands (80-89).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass

from mlgate.errors import InvalidField
from mlgate.oip import grpc_predict_v2_pb2 as pb
from mlgate.refs import check_version
from mlgate.v1 import models_pb2
from server.jobstore.registry import AliasChange, Route, Target

__all__ = [
    "MAX_ROUTING_KEY",
    "Routed",
    "alias_message",
    "bucket",
    "check_routes",
    "check_routing_key",
    "choose",
    "infer_routing_key",
    "routed",
]

#: The longest routing key taken, in characters.
MAX_ROUTING_KEY = 256
_PERCENT = 100


@dataclass(frozen=True)
class Routed:
    """The model a request is answered by, and how it got there (see the module's text)."""

    model_id: str
    name: str = ""
    version: int = 0
    alias: str = ""
    shadow_model_id: str = ""
    shadow_version: int = 0


def check_routing_key(key: str, field: str = "routing_key") -> str:
    if len(key) > MAX_ROUTING_KEY:
        raise InvalidField(field, f"is over {MAX_ROUTING_KEY} characters")
    return key


def infer_routing_key(request: pb.ModelInferRequest) -> str:
    """A ModelInfer request's routing key: its ``routing_key`` parameter (a string, or an
    integer taken as its digits); "" without one."""
    if "routing_key" not in request.parameters:
        return ""
    given = request.parameters["routing_key"]
    kind = given.WhichOneof("parameter_choice")
    if kind == "string_param":
        return check_routing_key(given.string_param, "parameters.routing_key")
    if kind == "int64_param":
        return str(given.int64_param)
    raise InvalidField("parameters.routing_key", "must be a string")


def bucket(routing_key: str) -> int:
    """The key's place in 0..99: the same on every gateway, in every process."""
    digest = hashlib.blake2b(routing_key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % _PERCENT


def choose(routes: Sequence[Route], routing_key: str = "") -> Route:
    """The route a request goes to: drawn by weight, or where its key falls."""
    point = bucket(routing_key) if routing_key else random.randrange(_PERCENT)
    start = 0
    for route in routes:
        start += route.weight
        if point < start:
            return route
    return routes[-1]  # weights are checked to sum to 100 when set: never reached


def routed(target: Target, alias: str, routing_key: str = "") -> Routed:
    """The answer for a resolved name reference (``alias``: the one it went through, if any)."""
    model_id, version = target.model_id, target.version
    if target.routes:
        route = choose(target.routes, routing_key)
        model_id, version = route.model_id, route.version
    return Routed(
        model_id, target.name, version, alias, target.shadow_model_id, target.shadow_version
    )


def alias_message(alias: str, target: Target | AliasChange) -> models_pb2.ModelAlias:
    """An alias as the API shows it: where a reference led through it, or as it was just set."""
    return models_pb2.ModelAlias(
        name=target.name,
        alias=alias,
        version=target.version,
        model_id=target.model_id,
        routes=[
            models_pb2.AliasRoute(version=r.version, weight=r.weight, model_id=r.model_id)
            for r in target.routes
        ],
        shadow_version=target.shadow_version,
        shadow_model_id=target.shadow_model_id,
    )


def check_routes(
    version: int, routes: Sequence[tuple[int, int]], shadow_version: int
) -> tuple[Route, ...]:
    """The routes of a SetModelAlias request, in version order, checked: a version or routes,
    not both; integer weights 1..100 summing to 100; distinct versions; a shadow that is none
    of them. Raises InvalidField naming the field (``routes[1].weight``)."""
    if version and routes:
        raise InvalidField("routes", "give version or routes, not both")
    if not version and not routes:
        raise InvalidField("version", "is required: give a version, or routes with weights")
    if shadow_version:
        check_version(shadow_version, "shadow_version")
    if version:
        check_version(version)
        if shadow_version == version:
            raise InvalidField("shadow_version", "is the version the alias points at")
        return ()
    if len(routes) < 2:
        raise InvalidField("routes", "a weighted alias needs two routes or more; give version")
    seen: dict[int, int] = {}
    for i, (number, weight) in enumerate(routes):
        check_version(number, f"routes[{i}].version")
        if not 1 <= weight <= _PERCENT:
            raise InvalidField(f"routes[{i}].weight", f"must be from 1 to 100, not {weight}")
        if number in seen:
            raise InvalidField(
                f"routes[{i}].version", f"version {number} is also routes[{seen[number]}]"
            )
        seen[number] = i
        if number == shadow_version:
            raise InvalidField("shadow_version", f"version {number} is routes[{i}]")
    total = sum(weight for _, weight in routes)
    if total != _PERCENT:
        raise InvalidField("routes", f"weights must sum to 100, not {total}")
    return tuple(sorted((Route(number, weight) for number, weight in routes), key=_version))


def _version(route: Route) -> int:
    return route.version
