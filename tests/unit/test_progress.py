"""Progress pacing: an attempt's first event at once, then the latest at most every interval."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

import pytest

from workers.progress import Pacer

WAIT = 10


@pytest.fixture
def pacer() -> Iterator[Pacer]:
    # Long enough that the offers below all fall within one interval of the first.
    running = Pacer(interval=0.5)
    running.start()
    yield running
    running.stop()


def test_the_first_event_goes_at_once_and_the_latest_held_one_when_its_turn_comes(
    pacer: Pacer,
) -> None:
    sent: queue.Queue[bytes] = queue.Queue()
    pace = pacer.pace(sent.put)
    pace.offer(b"loading")
    assert sent.get_nowait() == b"loading"  # published by the caller itself
    for stage in (b"fitting", b"evaluating", b"saving"):
        pace.offer(stage)
    assert sent.empty()
    # The caller is busy (a long fit): the pacer's thread publishes the latest.
    assert sent.get(timeout=WAIT) == b"saving"
    pace.offer(b"after")
    assert sent.get(timeout=WAIT) == b"after"
    assert sent.empty()


def test_what_is_held_when_the_attempt_ends_is_dropped(pacer: Pacer) -> None:
    sent: list[bytes] = []
    flushed = threading.Event()
    pace = pacer.pace(sent.append)
    pace.offer(b"loading")
    pace.offer(b"fitting")
    pace.close()
    pace.offer(b"late")
    # A later attempt's held event, due after this one's, shows the pacer has passed it by.
    other = pacer.pace(lambda body: flushed.set() if body == b"other" else None)
    other.offer(b"first")
    other.offer(b"other")
    assert flushed.wait(WAIT)
    assert sent == [b"loading"]


def test_an_error_publishing_at_once_reaches_the_caller(pacer: Pacer) -> None:
    def refuse(body: bytes) -> None:
        raise ConnectionError("broker down")

    with pytest.raises(ConnectionError):
        pacer.pace(refuse).offer(b"loading")


def test_a_first_event_held_for_first_after_is_dropped_if_the_attempt_ends_sooner(
    pacer: Pacer,
) -> None:
    sent: queue.Queue[bytes] = queue.Queue()
    quick = pacer.pace(sent.put, first_after=0.5)
    quick.offer(b"loading")
    quick.offer(b"fitting")
    assert sent.empty()  # held: its turn comes half a second into the attempt
    quick.close()
    slow = pacer.pace(sent.put, first_after=0.2)
    slow.offer(b"loading")
    slow.offer(b"fitting")
    assert sent.empty()
    assert sent.get(timeout=WAIT) == b"fitting"  # the latest, once its turn came
    assert sent.empty()
