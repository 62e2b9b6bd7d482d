"""Request/reply, the broker behaviour suite's second half: the same tests on every backend."""

from __future__ import annotations

import queue
import threading
import time
import uuid

import pytest

from brokers.base import INFERENCE_QUEUE, IncomingRequest, Reply, Request
from tests.support.broker_backends import BrokerFactory

WAIT = 20.0


def _request(
    body: bytes, *, ttl: float = WAIT, headers: tuple[tuple[str, str], ...] = ()
) -> Request:
    return Request(uuid.uuid4().hex, body, time.time() + ttl, headers)


def _replies() -> tuple[queue.Queue[Reply], object]:
    got: queue.Queue[Reply] = queue.Queue()
    return got, got.put


def _take(got: queue.Queue[Reply]) -> Reply:
    try:
        return got.get(timeout=WAIT)
    except queue.Empty:
        pytest.fail(f"no reply within {WAIT}s")


def _echo(incoming: IncomingRequest) -> bytes:
    return b"re:" + incoming.request.body


def test_a_request_is_answered_on_the_requesters_own_path(make_broker: BrokerFactory) -> None:
    gateway, worker = make_broker(), make_broker()
    seen: queue.Queue[IncomingRequest] = queue.Queue()

    def handler(incoming: IncomingRequest) -> bytes:
        seen.put(incoming)
        return _echo(incoming)

    serving = worker.serve_requests(INFERENCE_QUEUE, handler, concurrency=2)
    got, on_reply = _replies()
    requester = gateway.requester(on_reply)  # type: ignore[arg-type]
    sent = _request(b"rows", headers=(("traceparent", "00-abc-def-01"),))
    requester.send(INFERENCE_QUEUE, sent)
    reply = _take(got)
    assert (reply.correlation_id, reply.body, reply.error) == (
        sent.correlation_id,
        b"re:rows",
        None,
    )
    incoming = seen.get(timeout=WAIT)
    assert incoming.request.body == b"rows"
    assert incoming.request.headers == (("traceparent", "00-abc-def-01"),)
    assert incoming.request.deadline == pytest.approx(sent.deadline, abs=0.001)
    assert not incoming.redelivered
    serving.cancel(WAIT)
    requester.close()


def test_each_requester_gets_exactly_its_own_replies(make_broker: BrokerFactory) -> None:
    servers = [
        make_broker().serve_requests(INFERENCE_QUEUE, _echo, concurrency=2) for _ in range(2)
    ]
    requesters = []
    inboxes = []
    for _ in range(2):
        got, on_reply = _replies()
        inboxes.append(got)
        requesters.append(make_broker().requester(on_reply))  # type: ignore[arg-type]
    sent: list[dict[str, bytes]] = [{}, {}]
    for i in range(40):
        which = i % 2
        request = _request(f"{which}-{i}".encode())
        sent[which][request.correlation_id] = b"re:" + request.body
        requesters[which].send(INFERENCE_QUEUE, request)
    for which, inbox in enumerate(inboxes):
        received = {}
        for _ in range(len(sent[which])):
            reply = _take(inbox)
            assert reply.correlation_id not in received, "a request was answered twice"
            received[reply.correlation_id] = reply.body
        assert received == sent[which]
        assert inbox.empty()
    for server in servers:
        server.cancel(WAIT)
    for requester in requesters:
        requester.close()


def test_a_request_past_its_deadline_is_dropped_unanswered(make_broker: BrokerFactory) -> None:
    broker = make_broker()
    handled: list[bytes] = []

    def handler(incoming: IncomingRequest) -> bytes:
        handled.append(incoming.request.body)
        return _echo(incoming)

    got, on_reply = _replies()
    requester = broker.requester(on_reply)  # type: ignore[arg-type]
    # Sent while no worker serves: it waits in the queue, and its deadline passes there.
    requester.send(INFERENCE_QUEUE, _request(b"late", ttl=0.3))
    early = _request(b"early", ttl=WAIT)
    time.sleep(0.6)  # the deadline has to pass: there is no event for "time went by"
    requester.send(INFERENCE_QUEUE, early)
    serving = broker.serve_requests(INFERENCE_QUEUE, handler, concurrency=1)
    reply = _take(got)
    assert reply.correlation_id == early.correlation_id
    assert handled == [b"early"]
    serving.cancel(WAIT)
    requester.close()


def test_a_failing_handler_sends_nothing_and_serving_goes_on(make_broker: BrokerFactory) -> None:
    broker = make_broker()

    def handler(incoming: IncomingRequest) -> bytes:
        if incoming.request.body == b"boom":
            raise RuntimeError("a bug in the handler")
        return _echo(incoming)

    serving = broker.serve_requests(INFERENCE_QUEUE, handler, concurrency=1)
    got, on_reply = _replies()
    requester = broker.requester(on_reply)  # type: ignore[arg-type]
    requester.send(INFERENCE_QUEUE, _request(b"boom"))
    fine = _request(b"fine")
    requester.send(INFERENCE_QUEUE, fine)
    reply = _take(got)
    assert (reply.correlation_id, reply.body) == (fine.correlation_id, b"re:fine")
    assert got.empty()
    serving.cancel(WAIT)
    requester.close()


def test_a_cancelled_server_leaves_requests_to_the_next(make_broker: BrokerFactory) -> None:
    broker = make_broker()
    first = broker.serve_requests(INFERENCE_QUEUE, lambda incoming: b"first", concurrency=1)
    first.cancel(WAIT)
    got, on_reply = _replies()
    requester = broker.requester(on_reply)  # type: ignore[arg-type]
    request = _request(b"x")
    requester.send(INFERENCE_QUEUE, request)
    second = broker.serve_requests(INFERENCE_QUEUE, lambda incoming: b"second", concurrency=1)
    reply = _take(got)
    assert (reply.correlation_id, reply.body) == (request.correlation_id, b"second")
    second.cancel(WAIT)
    requester.close()


def test_concurrent_requests_are_served_concurrently(make_broker: BrokerFactory) -> None:
    broker = make_broker()
    inside = threading.Barrier(2, timeout=WAIT)

    def handler(incoming: IncomingRequest) -> bytes:
        inside.wait()  # both requests are in handlers at once, or this times out
        return _echo(incoming)

    serving = broker.serve_requests(INFERENCE_QUEUE, handler, concurrency=2)
    got, on_reply = _replies()
    requester = broker.requester(on_reply)  # type: ignore[arg-type]
    requester.send(INFERENCE_QUEUE, _request(b"a"))
    requester.send(INFERENCE_QUEUE, _request(b"b"))
    assert sorted(_take(got).body for _ in range(2)) == [b"re:a", b"re:b"]
    serving.cancel(WAIT)
    requester.close()
