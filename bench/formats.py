"""``python -m bench.formats``: save and load times and sizes of the default forest per format.

Times are medians of CPU time in this process (the machine's other load barely moves them);
loading includes the structure checks every worker runs before using a model.
"""

from __future__ import annotations

import pickle
import statistics
import time
from collections.abc import Callable

import skops.io as sio
from sklearn.datasets import load_diabetes

from mlgate.estimators import DEFAULT_ESTIMATOR, REGRESSION
from workers.estimators import build
from workers.formats import arrays
from workers.formats.fitted import check_fitted
from workers.formats.skops_format import TRUSTED_TYPES

__all__ = ["main", "measure"]


def _cpu_ms(fn: Callable[[], object], repeat: int) -> float:
    fn()
    samples = []
    for _ in range(repeat):
        start = time.process_time()
        fn()
        samples.append(time.process_time() - start)
    return statistics.median(samples) * 1000


def measure(repeat: int = 20) -> list[tuple[str, float, float, int]]:
    """(format, save ms, load ms, bytes) for the default forest on the diabetes data."""
    X, y = load_diabetes(return_X_y=True, as_frame=True)
    model, _ = build(DEFAULT_ESTIMATOR, REGRESSION, {}, 42)
    model.fit(X, y)
    features = [str(c) for c in X.columns]
    pickled = pickle.dumps(model)
    skopsed = sio.dumps(model)
    ours = arrays.encode(model)

    def load_ours() -> None:
        check_fitted(arrays.decode(ours), features)

    def load_skops() -> None:
        check_fitted(sio.loads(skopsed, trusted=TRUSTED_TYPES), features)

    return [
        (
            "pickle (unsafe: reference only)",
            _cpu_ms(lambda: pickle.dumps(model), repeat),
            _cpu_ms(lambda: pickle.loads(pickled), repeat),
            len(pickled),
        ),
        (
            "skops",
            _cpu_ms(lambda: sio.dumps(model), max(3, repeat // 5)),
            _cpu_ms(load_skops, max(3, repeat // 5)),
            len(skopsed),
        ),
        (
            arrays.FORMAT,
            _cpu_ms(lambda: arrays.encode(model), repeat),
            _cpu_ms(load_ours, repeat),
            len(ours),
        ),
    ]


def main() -> int:
    print("| format | save | load (with structure checks) | size |")
    print("|---|---|---|---|")
    for name, save, load, size in measure():
        print(f"| {name} | {save:.1f} ms | {load:.1f} ms | {size / 1000:.0f} KB |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
