"""The backfill's parts without a broker: its plan (names derived from the prefix), the rate bound, and when a
finite backfill is done."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
from confluent_kafka import TopicPartition

from consumer.backfill import BackfillError, BackfillPlan, Progress, RateBound, StartPoint, plan
from reviews_mtl.aggregates.prefixes import PrefixError
from reviews_mtl.settings import BackfillSettings, ConsumerSettings, TopicSettings


def test_the_plan_derives_group_and_topics_from_the_prefix() -> None:
    p = plan(BackfillSettings(model_dir=Path("m"), key_prefix="rmtl-v2"), ConsumerSettings(group_id="g"),
             TopicSettings(input="in", enriched="out", dlq="dead", alerts="alarm"), since_ms=None)
    assert (p.group_id, p.input_topic, p.enriched_topic, p.dlq_topic, p.alerts_topic) == (
        "g.backfill.rmtl-v2", "in", "out.rmtl-v2", "dead.rmtl-v2", "alarm.rmtl-v2")
    own = plan(BackfillSettings(model_dir=Path("m"), key_prefix="b", group_id="x", enriched_topic="e", dlq_topic="d"),
               ConsumerSettings(), TopicSettings(), since_ms=5)
    assert (own.group_id, own.enriched_topic, own.dlq_topic, own.since_ms) == ("x", "e", "d", 5)


@pytest.mark.parametrize("prefix", ["rmtl:v2", "a*", "", "-x", "with space"])
def test_a_prefix_that_could_collide_or_glob_is_refused(prefix: str) -> None:
    with pytest.raises(PrefixError):
        plan(BackfillSettings(model_dir=Path("m"), key_prefix=prefix), ConsumerSettings(), TopicSettings(), None)


def test_model_and_prefix_are_required() -> None:
    with pytest.raises(BackfillError, match="--model"):
        plan(BackfillSettings(key_prefix="b"), ConsumerSettings(), TopicSettings(), None)
    with pytest.raises(BackfillError, match="--key-prefix"):
        plan(BackfillSettings(model_dir=Path("m")), ConsumerSettings(), TopicSettings(), None)


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_the_rate_bound_keeps_the_average_under_the_rate() -> None:
    t = FakeTime()
    bound = RateBound(100.0, clock=t.clock, sleep=t.sleep)
    bound(0)
    assert t.slept == []  # nothing handled yet: the clock has not started
    for _ in range(10):
        t.now += 0.2  # a batch of 50 takes 0.2 s: 250/s unbounded
        bound(50)
    assert t.now == pytest.approx(0.2 + 5.0)  # 500 reviews at 100/s from the end of the first batch
    assert max(t.slept) <= 0.5  # short sleeps: a stop request is seen at once


def test_the_rate_bound_stops_sleeping_when_the_worker_stops() -> None:
    t = FakeTime()
    stopping = [False]

    def sleep_then_stop(seconds: float) -> None:
        t.sleep(seconds)
        stopping[0] = True

    bound = RateBound(1.0, clock=t.clock, sleep=sleep_then_stop, stopping=lambda: stopping[0])
    bound(1000)
    assert len(t.slept) == 1


@dataclass
class FakeConsumer:
    positions: dict[int, int] = field(default_factory=dict)

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition, self.positions.get(tp.partition, -1001)) for tp in partitions]


@dataclass
class FakeWorker:
    consumer: FakeConsumer
    assigned: set[tuple[str, int]]
    stopped: bool = False

    def request_stop(self) -> None:
        self.stopped = True

    @property
    def stopping(self) -> bool:
        return self.stopped


def _plan(follow: bool = False) -> BackfillPlan:
    return BackfillPlan(Path("m"), "b", "g", "in", "out.b", "dlq.b", "alerts.b", None, None, follow)


def test_done_when_every_partition_is_past_its_end_at_start() -> None:
    start = StartPoint(starts={0: 0, 1: 10, 2: 5}, ends={0: 100, 1: 50, 2: 5}, resumed=[1])
    assert start.total == 140
    progress = Progress(_plan(), start, interval_s=3600, bar=False)
    worker = FakeWorker(FakeConsumer({0: 100}), {("in", 0)})
    progress.attach(worker)  # type: ignore[arg-type]
    progress(10)
    assert not progress.caught_up  # partitions 1 and 2 are not even assigned yet
    worker.assigned |= {("in", 1), ("in", 2)}
    worker.consumer.positions[1] = 49
    progress(10)
    assert not progress.caught_up and progress.handled == 100 + 39
    worker.consumer.positions[1] = 51  # past a transaction marker at the end
    progress(1)
    assert progress.caught_up and worker.stopped and progress.handled == 140


def test_follow_keeps_going_once_caught_up() -> None:
    progress = Progress(_plan(follow=True), StartPoint({0: 0}, {0: 3}, []), interval_s=3600, bar=False)
    worker = FakeWorker(FakeConsumer({0: 3}), {("in", 0)})
    progress.attach(worker)  # type: ignore[arg-type]
    progress(3)
    assert progress.caught_up and not worker.stopped


def test_backfill_flags_default_to_their_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    from reviews_mtl.cli import build_parser
    from reviews_mtl.settings import env_names

    for name, value in (("REVIEWS_BACKFILL_KEY_PREFIX", "rmtl-b"), ("REVIEWS_BACKFILL_RATE", "50"),
                        ("REVIEWS_BACKFILL_SINCE", "2h"), ("REVIEWS_BACKFILL_FOLLOW", "true")):
        monkeypatch.setenv(name, value)
        assert name in env_names()
    args = build_parser().parse_args(["backfill"])
    assert (args.key_prefix, args.rate, args.since, args.follow) == ("rmtl-b", 50.0, "2h", True)
    assert build_parser().parse_args(["backfill", "--rate", "7"]).rate == 7.0  # a flag wins
