"""How much parallelism a fit may use: the worker decides, whatever a request's parameters say.

A request may name ``n_jobs`` (forests, linear and logistic regression, the encoder's column
transformer); scikit-learn starts that many threads, so ``n_jobs=1000`` would start a thousand.
The worker caps every such parameter at the cores it gives one fit.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["FITS_PER_CORE", "available_cores", "cap_jobs", "fit_cores", "most_fits"]

#: The most concurrent fits a worker runs per core it may use (MLGATE_TRAIN_CONCURRENCY's bound):
#: each is a child process holding its data, and past a few per core they only wait for a core.
FITS_PER_CORE = 4


def available_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not every platform has affinity masks
        return os.cpu_count() or 1


def most_fits() -> int:
    """The bound on MLGATE_TRAIN_CONCURRENCY on this machine."""
    return FITS_PER_CORE * available_cores()


def fit_cores(configured: int, train_concurrency: int) -> int:
    """``configured`` if set, else this process's cores shared among its concurrent fits."""
    if configured > 0:
        return configured
    return max(1, available_cores() // max(1, train_concurrency))


def cap_jobs(model: Any, cores: int) -> dict[str, int]:
    """Cap every ``n_jobs`` of ``model`` and its steps at ``cores``; the parameters changed.

    Negative values mean "all cores but k" to scikit-learn, which is the machine, not the share
    this worker gives a fit, so they are capped too. ``None`` means one job and stays.
    """
    changed = {
        name: cores
        for name, value in model.get_params(deep=True).items()
        if (name == "n_jobs" or name.endswith("__n_jobs"))
        and isinstance(value, int)
        and (value < 0 or value > cores)
    }
    if changed:
        model.set_params(**changed)
    return changed
