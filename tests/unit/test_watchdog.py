"""The stall watchdog's decision: rewind only a partition that stays fetched-but-unprocessed while nothing moves."""

from __future__ import annotations

from pipeline.watchdog import PartitionView, StallWatchdog


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


STUCK = PartitionView(position=29, committed=8, in_flight=False)
CAUGHT_UP = PartitionView(position=29, committed=29, in_flight=False)
BUSY = PartitionView(position=29, committed=8, in_flight=True)


def observe(dog: StallWatchdog, progress: int, views: dict[str, PartitionView]) -> list[str]:
    """What the worker's timer does: look at the partitions only while idle."""
    return [str(tp) for tp in dog.due(views)] if dog.idle(progress) else []


def run(dog: StallWatchdog, clock: Clock, steps: list[tuple[float, int, dict[str, PartitionView]]]) -> list[list[str]]:
    out = []
    for t, progress, views in steps:
        clock.now = t
        out.append(observe(dog, progress, views))
    return out


def test_rewinds_a_partition_left_behind_while_the_worker_is_idle() -> None:
    clock = Clock()
    dog = StallWatchdog(20, clock)
    steps = [(0, 5, {"a": STUCK, "b": CAUGHT_UP}), (5, 5, {"a": STUCK, "b": CAUGHT_UP}), (26, 5, {"a": STUCK})]
    assert run(dog, clock, steps) == [[], [], ["a"]]


def test_progress_resets_the_clock() -> None:
    clock = Clock()
    dog = StallWatchdog(20, clock)
    steps = [(0, 1, {"a": STUCK}), (10, 1, {"a": STUCK}), (19, 2, {"a": STUCK}), (25, 2, {"a": STUCK})]
    assert run(dog, clock, steps) == [[], [], [], []]
    clock.now = 45
    assert observe(dog, 2, {"a": STUCK}) == ["a"]


def test_never_rewinds_in_flight_or_caught_up_partitions() -> None:
    clock = Clock()
    dog = StallWatchdog(20, clock)
    steps = [(t, 7, {"busy": BUSY, "done": CAUGHT_UP}) for t in (0, 30, 60, 90)]
    assert run(dog, clock, steps) == [[], [], [], []]


def test_a_moving_partition_is_not_stalled() -> None:
    clock = Clock()
    dog = StallWatchdog(20, clock)
    moving = [PartitionView(position=29 + i, committed=8 + i, in_flight=False) for i in range(4)]
    steps = [(0, 3, {"a": moving[0]})] + [(15.0 * i, 3, {"a": moving[i]}) for i in range(1, 4)]
    assert run(dog, clock, steps) == [[], [], [], []]


def test_after_a_rewind_the_partition_must_stall_again_for_the_full_window() -> None:
    clock = Clock()
    dog = StallWatchdog(20, clock)
    steps = [(0, 0, {"a": STUCK}), (1, 0, {"a": STUCK}), (21, 0, {"a": STUCK}), (30, 0, {"a": STUCK})]
    assert run(dog, clock, steps) == [[], [], ["a"], []]
