"""The fit processes' cache of scikit-learn's parameter names (``workers.paramnames``): the same
names, fresh lists, and the same forest, tree for tree. Run in a child interpreter, so the test
process keeps scikit-learn as it is."""

from __future__ import annotations

import subprocess
import sys
import textwrap

_CHECK = textwrap.dedent(
    """
    import numpy as np
    from sklearn.base import BaseEstimator
    from sklearn.datasets import load_diabetes, load_iris
    from sklearn.ensemble import ExtraTreesClassifier, RandomForestRegressor
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from workers.paramnames import cache_param_names

    def models():
        X, y = load_diabetes(return_X_y=True)
        Xc, yc = load_iris(return_X_y=True)
        return [
            RandomForestRegressor(n_estimators=30, max_depth=4, random_state=3).fit(X, y),
            ExtraTreesClassifier(n_estimators=20, bootstrap=True, random_state=7).fit(Xc, yc),
        ]

    classes = [RandomForestRegressor, ExtraTreesClassifier, Ridge, StandardScaler]
    plain_names = [c._get_param_names() for c in classes]
    plain = models()
    assert cache_param_names() and cache_param_names()  # a second call changes nothing
    assert [c._get_param_names() for c in classes] == plain_names
    first = Ridge._get_param_names()
    first.append("changed")
    assert "changed" not in Ridge._get_param_names()  # a fresh list for each caller
    assert make_pipeline(StandardScaler(), Ridge(alpha=2.0)).get_params()["ridge__alpha"] == 2.0
    for before, after in zip(plain, models(), strict=True):
        assert before.get_params() == after.get_params()
        for old, new in zip(before.estimators_, after.estimators_, strict=True):
            assert old.get_params() == new.get_params()
            for name in ("feature", "threshold", "value", "children_left", "children_right"):
                np.testing.assert_array_equal(getattr(old.tree_, name), getattr(new.tree_, name))
    print("same")
    """
)


def test_cached_parameter_names_make_the_same_estimators_and_forests() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _CHECK], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "same"
