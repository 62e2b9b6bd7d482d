"""Every attribute scikit-learn's prediction reads from a model is one the structural checks read
first, traced for every allowlisted estimator and task: a scikit-learn upgrade that starts to
read something new fails here until the checks look at it too.

An attribute counts as read when it is looked up on an object (present or not: ``getattr`` with a
default counts) and is not something the class itself defines, nor a name the checks refuse as
state (``predict_proba`` on a regressor cannot be an attribute of a model that passed them).
What the checks set (the boosting loss they rebuild) counts as read by them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.artifact_fuzz import case_names, cases, values_of
from workers.categories import unseen_categories
from workers.evaluation import evaluate_frame
from workers.formats import arrays
from workers.formats.checks import may_hold
from workers.formats.fitted import check_fitted
from workers.parallelism import cap_jobs

Reads = set[tuple[str, str]]


class _Tracer:
    """Records instance-attribute lookups (and assignments) on the allowlisted classes while it
    is on."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.reads: Reads = set()
        self.on = False
        for cls in arrays.CLASSES.values():
            monkeypatch.setattr(cls, "__getattribute__", self._getter(cls), raising=False)
            monkeypatch.setattr(cls, "__setattr__", self._setter(cls), raising=False)

    def _record(self, obj: Any, name: str, defined: set[str]) -> None:
        # A name the class defines is code, not state; one the checks refuse as state
        # (``predict_proba`` on a regressor) cannot be in a model that passed them.
        if self.on and name not in defined and may_hold(type(obj), name):
            self.reads.add((type(obj).__name__, name))

    def _getter(self, cls: type) -> Callable[[Any, str], Any]:
        defined = set(dir(cls))

        def get(obj: Any, name: str) -> Any:
            self._record(obj, name, defined)
            return object.__getattribute__(obj, name)

        return get

    def _setter(self, cls: type) -> Callable[[Any, str, Any], None]:
        defined = set(dir(cls))

        def set_(obj: Any, name: str, value: Any) -> None:
            self._record(obj, name, defined)  # what the checks rebuild, they control
            object.__setattr__(obj, name, value)

        return set_

    def during(self, action: Callable[[], object]) -> Reads:
        self.reads = set()
        self.on = True
        try:
            action()
        finally:
            self.on = False
        return self.reads


@pytest.fixture
def tracer(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Tracer]:
    yield _Tracer(monkeypatch)


@pytest.mark.parametrize("name", case_names())
def test_prediction_reads_only_what_the_checks_read(tracer: _Tracer, name: str) -> None:
    case = cases()[name]
    model = arrays.decode(case.artifact)
    checked = tracer.during(lambda: check_fitted(model, case.features))

    def predict() -> None:
        cap_jobs(model, 1)
        for frame in case.frames:
            evaluate_frame(model, frame)
            model.predict(frame)  # scikit-learn's own path, where the worker takes a faster one
            if hasattr(model, "predict_proba"):
                model.predict_proba(frame)
            unseen_categories(model, values_of(frame))

    read = tracer.during(predict)
    assert read, "nothing was traced"
    assert read - checked == set()
