"""Model names, aliases and references: the second key to a model, beside its immutable id.

A reference is one of::

    mdl_<32 hex>        the model with that id
    NAME                the latest (highest) version registered under NAME
    NAME/VERSION        one version, 1, 2, 3...; never reused, so it always means the same model
    NAME@ALIAS          the version ALIAS points at now

Names may not start with ``mdl_``, so a reference is never both a name and an id. Parsing is
pure: what a reference resolves to is the job store's business (``server.model_catalog``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mlgate.errors import InvalidField
from mlgate.ids import check_model_id

__all__ = [
    "MAX_VERSION",
    "ModelRef",
    "check_alias",
    "check_model_name",
    "check_version",
    "parse_ref",
    "ref_from_parts",
]

_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_ALIAS = re.compile(r"[a-z][a-z0-9._-]{0,63}")
_VERSION = re.compile(r"[1-9][0-9]{0,17}")
_NAME_SHAPE = (
    "lowercase letters, digits, '-', '_' and '.', at most 64, starting with a letter or digit"
)
_ALIAS_SHAPE = "lowercase letters, digits, '-', '_' and '.', at most 64, starting with a letter"
_REF_SHAPE = "an id (mdl_...), NAME, NAME/VERSION or NAME@ALIAS"
MAX_VERSION = 10**18 - 1


@dataclass(frozen=True)
class ModelRef:
    """A parsed reference: exactly one of ``model_id`` or ``name`` is set; with a name, at most
    one of ``version`` and ``alias`` (neither: the latest version)."""

    model_id: str = ""
    name: str = ""
    version: int = 0
    alias: str = ""

    def __str__(self) -> str:
        if self.model_id:
            return self.model_id
        if self.version:
            return f"{self.name}/{self.version}"
        if self.alias:
            return f"{self.name}@{self.alias}"
        return self.name


def check_model_name(value: str, field: str = "model_name") -> str:
    if not value:
        raise InvalidField(field, "is required")
    if not _NAME.fullmatch(value):
        raise InvalidField(field, f"{value[:80]!r} is not a valid model name ({_NAME_SHAPE})")
    if value.startswith("mdl_"):
        raise InvalidField(field, f"{value[:80]!r}: names starting with mdl_ are model ids")
    return value


def check_alias(value: str, field: str = "alias") -> str:
    if not value:
        raise InvalidField(field, "is required")
    if not _ALIAS.fullmatch(value):
        raise InvalidField(field, f"{value[:80]!r} is not a valid alias ({_ALIAS_SHAPE})")
    return value


def check_version(value: int, field: str = "version") -> int:
    if not 0 < value <= MAX_VERSION:
        raise InvalidField(field, f"must be a version number, 1 or more, not {value}")
    return value


def parse_ref(text: str, field: str = "model_id") -> ModelRef:
    """The reference ``text`` names; raises InvalidField naming ``field``."""
    if not text:
        raise InvalidField(field, f"is required: {_REF_SHAPE}")
    if text.startswith("mdl_"):
        return ModelRef(model_id=check_model_id(text, field))
    name, slash, version = text.partition("/")
    if slash:
        name = _ref_name(name, text, field)
        if not _VERSION.fullmatch(version):
            raise InvalidField(
                field, f"{text[:80]!r}: the version after '/' must be a number, 1 or more"
            )
        return ModelRef(name=name, version=int(version))
    name, at, alias = text.partition("@")
    if at:
        if not _ALIAS.fullmatch(alias):
            raise InvalidField(field, f"{text[:80]!r}: the alias after '@' must be {_ALIAS_SHAPE}")
        return ModelRef(name=_ref_name(name, text, field), alias=alias)
    return ModelRef(name=_ref_name(name, text, field))


def _ref_name(name: str, text: str, field: str) -> str:
    if not _NAME.fullmatch(name):
        raise InvalidField(field, f"{text[:80]!r} is not a model reference ({_REF_SHAPE})")
    return name


def ref_from_parts(name: str, version: str, field: str = "model_name") -> ModelRef:
    """A reference from a separate name and version, as inference protocols send them: an empty
    version is the latest, digits a version, anything else an alias."""
    ref = parse_ref(name, field)
    if not version:
        return ref
    if ref.model_id or ref.version or ref.alias:
        raise InvalidField(
            "model_version", "must be empty when the model is named by id, version or alias"
        )
    text = f"{name}/{version}" if version.isdigit() else f"{name}@{version}"
    return parse_ref(text, "model_version")
