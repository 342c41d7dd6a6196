"""What is each asyncio task of a worker waiting for? (`kill -USR1 <worker pid>` writes it to the worker's log.)

`Task.get_stack()` stops at the first frame, and async generators (Faust's `stream.take`, its stream iterators)
hide the rest; following `cr_await` / `ag_await` / `gi_yieldfrom` shows the whole await chain down to the
future a task is parked on.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
import signal
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)


def _await_chain(obj: Any) -> Iterator[tuple[FrameType | None, Any]]:
    """Frames of a coroutine and of everything it awaits, outermost first; the last item is the leaf awaitable."""
    seen: set[int] = set()
    while obj is not None and id(obj) not in seen:
        seen.add(id(obj))
        frame = getattr(obj, "cr_frame", None) or getattr(obj, "ag_frame", None) or getattr(obj, "gi_frame", None)
        yield frame, obj
        nxt = getattr(obj, "cr_await", None)
        if nxt is None:
            nxt = getattr(obj, "ag_await", None)
        if nxt is None:
            nxt = getattr(obj, "gi_yieldfrom", None)
        if nxt is None and frame is None:
            nxt = _wrapped(obj)
        obj = nxt


def _wrapped(obj: Any) -> Any:
    """The coroutine or generator inside an opaque wrapper (`async_generator_asend`, `coroutine_wrapper`)."""
    for ref in gc.get_referents(obj):
        if inspect.iscoroutine(ref) or inspect.isasyncgen(ref) or inspect.isgenerator(ref):
            return ref
    return None


def describe_task(task: asyncio.Task[Any]) -> str:
    """One block per task: its name, then `file:line function` for each awaiting frame, then the leaf."""
    lines = [f"task {task.get_name()}"]
    leaf: Any = None
    for frame, obj in _await_chain(task.get_coro()):
        leaf = obj
        if frame is not None:
            lines.append(f"    {frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}")
    if leaf is not None and not hasattr(leaf, "cr_frame") and not hasattr(leaf, "ag_frame"):
        lines.append(f"    waiting on {leaf!r:.200}")
    return "\n".join(lines)


def dump_tasks(loop: asyncio.AbstractEventLoop | None = None) -> str:
    loop = loop or asyncio.get_running_loop()
    return "\n".join(describe_task(t) for t in asyncio.all_tasks(loop))


def consumer_state(consumer: Any) -> str:
    """Where a Faust consumer stands per partition: read, acked and committed offsets, paused or not."""
    tps = sorted(consumer.assignment(), key=str)
    active = consumer._get_active_partitions()
    lines = [f"flow_active={consumer.flow_active} unacked={len(consumer._unacked_messages)}"]
    for tp in tps:
        acked = consumer._acked.get(tp) or []
        lines.append(
            f"    {tp.topic}[{tp.partition}] read={consumer._read_offset.get(tp)} "
            f"committed={consumer._committed_offset.get(tp)} acked_pending={len(acked)} "
            f"active={tp in active} paused={tp in consumer._paused_partitions}"
        )
    lines.extend(_client_state(consumer))
    return "\n".join(lines)


def _client_state(consumer: Any) -> list[str]:
    """The Kafka client's own view (position, paused) of each assigned partition, when the driver exposes it."""
    client = getattr(getattr(consumer, "_thread", None), "_consumer", None)
    assignment = getattr(getattr(client, "_subscription", None), "subscription", None)
    assignment = getattr(assignment, "assignment", None)
    if assignment is None:
        return []
    lines = ["client:"]
    for tp, state in sorted(assignment._tp_state.items(), key=lambda kv: str(kv[0])):
        position = state._position if state.has_valid_position else None
        lines.append(f"    {tp.topic}[{tp.partition}] position={position} paused={state.paused} status={state._status}")
    return lines


def install_dump_on_signal(
    loop: asyncio.AbstractEventLoop, extra: Callable[[], str] | None = None, signum: int = signal.SIGUSR1
) -> None:
    """Replace the handler for `signum` with one that logs every task's await chain (and `extra()`)."""

    def dump() -> None:
        text = dump_tasks(loop)
        if extra is not None:
            try:
                text += "\n" + extra()
            except Exception as exc:  # a diagnostic must never take the worker down
                text += f"\n(extra state unavailable: {exc!r})"
        log.warning("asyncio tasks:\n%s", text)

    loop.add_signal_handler(signum, dump)
