"""The crafted-artifact fuzzer: any few fields of any allowlisted estimator's saved state changed,
and the mutant is refused with a status or predicts finite outputs of the right shape.

Each mutant is loaded and predicted with in a sandboxed child, as a worker would, so a crash (an
abort from malloc, a segfault) or a hang fails the example instead of the test run, and each
call's memory growth is measured. Hypothesis runs a fixed, derandomized set of examples per model
so that ``make test`` takes a bounded time; ``MLGATE_FUZZ_EXAMPLES`` asks for more, and
``MLGATE_FUZZ_SEED`` for a different set.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from tests.support.artifact_fuzz import PRELOAD, case_names, cases, probe
from tests.support.mutations import mutate
from tests.support.sandbox import Died, Sandbox

_EXAMPLES = int(os.environ.get("MLGATE_FUZZ_EXAMPLES", "40"))
_SEED = os.environ.get("MLGATE_FUZZ_SEED")
#: A few hundred MB, as the guarantee says; these small models take a few MB.
_MAX_GROWTH_KIB = 256 * 1024


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(PRELOAD) as box:
        yield box


def test_every_base_model_predicts_unmutated(sandbox: Sandbox) -> None:
    for case in cases().values():
        outcome = sandbox.run(probe, case.artifact, case.features, case.frames)
        assert not isinstance(outcome, Died), f"{case.name}: the child {outcome.how}"
        (verdict, detail), _ = outcome
        assert verdict == "predicted", f"{case.name}: {detail}"


@pytest.mark.slow
@pytest.mark.parametrize("name", case_names())
def test_a_mutant_is_refused_or_predicts_soundly(sandbox: Sandbox, name: str) -> None:
    case = cases()[name]

    @settings(
        max_examples=_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=_SEED is None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(st.data())
    def fuzz(data: st.DataObject) -> None:
        mutant = mutate(case.artifact, data)
        outcome = sandbox.run(probe, mutant, case.features, case.frames, timeout=60)
        assert not isinstance(outcome, Died), f"the mutant's child {outcome.how}"
        (verdict, detail), grown = outcome
        assert verdict != "wrong", detail
        assert grown < _MAX_GROWTH_KIB, f"loading and predicting grew the child by {grown} KiB"

    if _SEED is not None:
        fuzz = seed(int(_SEED))(fuzz)
    fuzz()
