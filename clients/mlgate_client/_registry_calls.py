"""MLGateClient's calls that name, describe and export models (the model registry)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any, TypeVar

import grpc

from mlgate.v1 import models_pb2
from mlgate_client.errors import MLGateError, from_rpc_error
from mlgate_client.results import Alias, Model

if TYPE_CHECKING:
    from mlgate.v1 import models_pb2_grpc

__all__ = ["RegistryCalls"]

Resp = TypeVar("Resp")


class RegistryCalls:
    """Mixed into MLGateClient, which provides the stub, the timeout and ``_unary``."""

    if TYPE_CHECKING:
        _models: models_pb2_grpc.ModelServiceStub
        _timeout: float | None

        def _unary(self, method: Callable[..., Resp], request: Any) -> Resp: ...

    def model_versions(self, name: str) -> list[Model]:
        """Every registered version of ``name``, highest first."""
        versions: list[Model] = []
        token = ""
        while True:
            request = models_pb2.ListModelsRequest(name=name, page_size=1000, page_token=token)
            response = self._unary(self._models.ListModels, request)
            versions += map(Model.from_proto, response.models)
            token = response.next_page_token
            if not token:
                return versions

    def set_alias(
        self,
        name: str,
        alias: str,
        version: int = 0,
        *,
        routes: Mapping[int, int] | Sequence[tuple[int, int]] = (),
        shadow_version: int = 0,
    ) -> Alias:
        """Point ``name@alias`` at ``version``, or at weighted ``routes`` ({version: weight} or
        (version, weight) pairs, integer percentages summing to 100), creating or replacing it
        in one atomic change; ``shadow_version`` mirrors every request through the alias to
        that version (0: none)."""
        pairs = list(routes.items()) if isinstance(routes, Mapping) else list(routes)
        request = models_pb2.SetModelAliasRequest(
            name=name,
            alias=alias,
            version=version,
            routes=[models_pb2.AliasRoute(version=v, weight=w) for v, w in pairs],
            shadow_version=shadow_version,
        )
        response = self._unary(self._models.SetModelAlias, request)
        return Alias.from_proto(response.alias, response.previous_version)

    def delete_alias(self, name: str, alias: str) -> None:
        request = models_pb2.DeleteModelAliasRequest(name=name, alias=alias)
        self._unary(self._models.DeleteModelAlias, request)

    def update_model(
        self,
        model_id: str,
        description: str | None = None,
        set_tags: Mapping[str, str] | None = None,
        remove_tags: Sequence[str] = (),
    ) -> Model:
        """Set the description (unless None) and add, change or remove tags."""
        request = models_pb2.UpdateModelRequest(
            model_id=model_id, set_tags=dict(set_tags or {}), remove_tags=list(remove_tags)
        )
        if description is not None:
            request.description = description
        return Model.from_proto(self._unary(self._models.UpdateModel, request).model)

    def export_model(self, model_id: str, target: IO[bytes]) -> tuple[Model, str]:
        """Write the model's artifact into ``target``; its record and the artifact's format
        ("mlgate-arrays-v1": load it with the server's ``workers.formats.decode``; "skops": with
        ``skops.io``;
        never pickle). The bytes are checked against the
        record's sha256 as they arrive; a mismatch raises DATA_LOSS."""
        request = models_pb2.ExportModelRequest(model_id=model_id)
        # grpc-stubs types the streaming call loosely: it is an iterator with cancel().
        stream: Any = self._models.ExportModel(request, timeout=self._timeout)
        digest = hashlib.sha256()
        record: models_pb2.Model | None = None
        fmt = ""
        try:
            for response in stream:
                if response.HasField("model"):
                    record, fmt = response.model, response.format
                digest.update(response.chunk)
                target.write(response.chunk)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from exc
        finally:
            stream.cancel()
        if record is None:
            raise MLGateError("the export ended before the model's record", "INTERNAL")
        if digest.hexdigest() != record.sha256:
            raise MLGateError(
                f"the exported artifact does not match its sha256 {record.sha256}", "DATA_LOSS"
            )
        return Model.from_proto(record), fmt
