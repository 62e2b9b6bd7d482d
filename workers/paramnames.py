"""A fit process's one change to scikit-learn: an estimator class's parameter names are read once.

scikit-learn reads a class's parameter names from its ``__init__`` signature
(``inspect.signature``, tens of microseconds) on every ``get_params``, ``set_params`` and
``clone``; a forest makes each tree with five of them, so they were a seventh of a seed forest's
fit (12 of 88 ms of CPU, profiled on the training bench's job). The names depend on the class
alone, so ``cache_param_names`` keeps them per class: the same estimators, the same models (a
test holds a forest fitted either way equal, tree for tree), only faster. Callers get a fresh
list each time, as before, so none can change another's.

Only the fit processes call it (``workers.fitwarm`` in the forkserver they are forked from, and
``workers.fitting`` once more in case that preload failed); the worker and the gateway leave
scikit-learn as it is.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

__all__ = ["cache_param_names"]

_CACHED = "_mlgate_cached_param_names"


def cache_param_names() -> bool:
    """Cache ``BaseEstimator._get_param_names`` per class; whether it is cached now (False if
    this scikit-learn has no such class method, which is then left alone)."""
    from sklearn.base import BaseEstimator

    current = BaseEstimator.__dict__.get("_get_param_names")
    if not isinstance(current, classmethod):
        return False
    read: Callable[[type], Any] = current.__func__
    if getattr(read, _CACHED, False):
        return True
    names = functools.cache(lambda cls: tuple(read(cls)))

    def cached(cls: type) -> list[str]:
        return list(names(cls))

    setattr(cached, _CACHED, True)
    cached.__doc__ = read.__doc__
    BaseEstimator._get_param_names = classmethod(cached)
    return True
