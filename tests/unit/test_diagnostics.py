"""The USR1 task dump must see through async generators (Faust's streams), or it shows nothing useful."""

from __future__ import annotations

import asyncio

from pipeline.diagnostics import dump_tasks


async def _ticks() -> object:
    while True:
        await asyncio.sleep(60)
        yield 1


async def _consume() -> None:
    async for _ in _ticks():
        pass


def test_dump_follows_the_await_chain_into_async_generators() -> None:
    async def main() -> str:
        task = asyncio.create_task(_consume(), name="consumer")
        await asyncio.sleep(0.01)
        try:
            return dump_tasks()
        finally:
            task.cancel()

    text = dump_tasks_block(asyncio.run(main()), "consumer")
    assert "_consume" in text and "_ticks" in text and "sleep" in text


def dump_tasks_block(text: str, name: str) -> str:
    blocks = text.split("task ")
    return next(b for b in blocks if b.startswith(name))
