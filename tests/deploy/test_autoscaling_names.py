"""docs/autoscaling.md names the queues, streams and consumer group the brokers' code declares: an
autoscaler configured from it reads the real backlog, not an empty queue of a similar name."""

from __future__ import annotations

import re

import yaml

from brokers._rabbitmq_topology import Topology
from brokers._redis_keys import WORK_GROUP, Keys
from brokers.base import PREDICT_QUEUE, TRAIN_QUEUE
from brokers.settings import BrokerSettings
from tests.support.kubernetes import check_triggers
from tests.support.walkthroughs import ROOT, blocks

DOC = ROOT / "docs" / "autoscaling.md"


def test_the_documented_triggers_name_the_queues_and_group_the_code_declares() -> None:
    namespace = BrokerSettings().namespace  # the documented names are the default namespace's
    triggers = [
        trigger
        for block in blocks(DOC)
        if block.language == "yaml"
        for trigger in yaml.safe_load(block.code)["triggers"]
    ]
    assert check_triggers(triggers, namespace) == {"rabbitmq", "redis-streams"}


def test_the_documented_table_names_the_queues_and_streams_the_code_declares() -> None:
    text = DOC.read_text()
    rows = {
        row[0]: row[1:]
        for row in (
            [cell.strip(" `") for cell in line.strip("|").split("|")]
            for line in text.splitlines()
            if line.startswith("| RabbitMQ queue") or line.startswith("| Redis stream")
        )
    }
    namespace = BrokerSettings().namespace
    assert rows["RabbitMQ queue"] == [
        Topology(namespace).work_queue(TRAIN_QUEUE),
        Topology(namespace).work_queue(PREDICT_QUEUE),
    ]
    assert rows[f"Redis stream (consumer group `{WORK_GROUP}`)"] == [
        Keys(namespace).queue(TRAIN_QUEUE),
        Keys(namespace).queue(PREDICT_QUEUE),
    ]
    assert re.search(rf"`MLGATE_NAMESPACE=NS`, replace `{namespace}` with `NS`", text)
