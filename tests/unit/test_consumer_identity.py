"""Replica identity: transactional ids that never collide between supervisors, and no secret in a command line."""

from __future__ import annotations

import argparse

import pytest

from consumer.app import transactional_id
from consumer.cli import child_arguments, child_environment, register
from consumer.supervisor import Supervisor
from reviews_mtl.settings import ConsumerSettings


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    return parser.parse_args(["consume", *argv])


def test_two_supervisors_on_one_host_give_their_replicas_different_transactional_ids() -> None:
    first = Supervisor(["--replicas", "2"], 2, 5.0)
    second = Supervisor(["--replicas", "2"], 2, 5.0)
    ids = {transactional_id(ConsumerSettings(instance_id=sup.instance_id), replica)
           for sup in (first, second) for replica in (0, 1)}
    assert len(ids) == 4


def test_a_stable_instance_id_gives_a_stable_transactional_id(monkeypatch: pytest.MonkeyPatch) -> None:
    # In Kubernetes the pod name (a StatefulSet ordinal) is the instance id: a restarted pod fences its predecessor.
    monkeypatch.setenv("REVIEWS_CONSUMER_INSTANCE_ID", "reviews-mtl-consumer-3")
    a, b = transactional_id(ConsumerSettings(), None), transactional_id(ConsumerSettings(), None)
    assert a == b and a.endswith("reviews-mtl-consumer-3")
    monkeypatch.delenv("REVIEWS_CONSUMER_INSTANCE_ID")
    assert transactional_id(ConsumerSettings(), None) != transactional_id(ConsumerSettings(), None)


def test_a_redis_password_never_reaches_a_replica_command_line() -> None:
    args = _args("--redis-url", "redis://:s3cret@localhost:6390/0", "--replicas", "2")
    argv = child_arguments(args)
    assert not any("s3cret" in part for part in argv)
    assert child_environment(args) == {"REDIS_URL": "redis://:s3cret@localhost:6390/0"}
