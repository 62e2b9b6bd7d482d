"""``python -m storage.builtin_csv NAME``: a built-in dataset's CSV rendering on standard output.

The gateway serves a built-in dataset's download as this rendering (the bytes its sha256 is of)
without importing scikit-learn or pandas itself: it runs this once per dataset and keeps the
result (``server.dataset_download``).
"""

from __future__ import annotations

import sys

from mlgate.ids import BUILTIN_DATASETS

__all__ = ["main", "render"]


def render(dataset_id: str) -> bytes:
    """The CSV rendering of built-in dataset ``dataset_id``."""
    from storage.datasets import builtin_frame

    frame, _ = builtin_frame(dataset_id)
    text: str = frame.to_csv(index=False)
    return text.encode()


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in BUILTIN_DATASETS:
        print(
            f"usage: python -m storage.builtin_csv {{{','.join(BUILTIN_DATASETS)}}}",
            file=sys.stderr,
        )
        return 2
    sys.stdout.buffer.write(render(argv[0]))
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
