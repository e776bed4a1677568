"""workloads/serving.py's Batcher: a lone request skips the batch queue, concurrent ones batch together."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from types import SimpleNamespace
from typing import Any, TypeVar

import pytest
from ray import serve

from workloads.serving import Batcher

T = TypeVar("T")


async def _settle(tasks: set[asyncio.Task[Any]]) -> None:
    await asyncio.gather(*tasks, return_exceptions=True)


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run on a private loop (``asyncio.run`` would unset the main thread's loop for later tests)."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coroutine)
    finally:
        pending = asyncio.all_tasks(loop)  # Serve's batch queue keeps a task waiting for items
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(_settle(pending))
        loop.close()


@pytest.fixture
def in_replica(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``serve.get_replica_context()`` answer, as it does inside a replica (Serve's batch queue
    reads the deployment's max_ongoing_requests from it)."""
    context = SimpleNamespace(_deployment_config=SimpleNamespace(max_ongoing_requests=8))
    monkeypatch.setattr(serve, "get_replica_context", lambda: context)


def _doubler(calls: list[list[int]]) -> Any:
    async def forward(items: list[int]) -> list[int]:
        calls.append(list(items))
        return [2 * item for item in items]

    return forward


def test_a_lone_request_goes_straight_to_the_function(in_replica: None) -> None:
    calls: list[list[int]] = []
    batcher: Batcher[int, int] = Batcher(_doubler(calls), max_batch_size=8)

    async def one_after_another() -> list[int]:
        return [await batcher(1), await batcher(2)]

    assert run(one_after_another()) == [2, 4]
    assert calls == [[1], [2]]


def _task_recorder(tasks: list[Any]) -> Any:
    async def forward(items: list[int]) -> list[int]:
        tasks.append(asyncio.current_task())
        return [2 * item for item in items]

    return forward


def test_a_lone_request_runs_in_its_own_task_not_the_batch_queues(in_replica: None) -> None:
    tasks: list[Any] = []
    batcher: Batcher[int, int] = Batcher(_task_recorder(tasks), max_batch_size=8)

    async def alone() -> bool:
        await batcher(1)
        return tasks == [asyncio.current_task()]

    assert run(alone()), "a lone request went through Serve's batch queue"


def test_requests_that_arrive_together_share_one_call(in_replica: None) -> None:
    calls: list[list[int]] = []
    batcher: Batcher[int, int] = Batcher(_doubler(calls), max_batch_size=8)

    async def together() -> list[int]:
        return list(await asyncio.gather(*(batcher(i) for i in range(6))))

    assert run(together()) == [0, 2, 4, 6, 8, 10]
    assert sorted(item for call in calls for item in call) == list(range(6))
    assert max(len(call) for call in calls) > 1, f"no batching happened: {calls}"
    assert batcher._in_flight == 0


def test_the_function_never_runs_twice_at_once(in_replica: None) -> None:
    """A lone request's direct call and a batch of the requests arriving during it share one lock,
    even when the function yields (as a forward sent to a thread would)."""
    running, most = [0], [0]
    calls: list[list[int]] = []

    async def slow(items: list[int]) -> list[int]:
        running[0] += 1
        most[0] = max(most[0], running[0])
        calls.append(list(items))
        await asyncio.sleep(0.01)
        running[0] -= 1
        return [2 * item for item in items]

    batcher: Batcher[int, int] = Batcher(slow, max_batch_size=8)

    async def first_alone_then_more() -> list[int]:
        first = asyncio.ensure_future(batcher(0))
        await asyncio.sleep(0.001)  # the first is in its direct call now
        rest = await asyncio.gather(*(batcher(i) for i in range(1, 5)))
        return [await first, *rest]

    assert run(first_alone_then_more()) == [0, 2, 4, 6, 8]
    assert calls[0] == [0]
    assert most[0] == 1, calls


def test_a_wait_timeout_sends_even_a_lone_request_through_the_queue(in_replica: None) -> None:
    tasks: list[Any] = []
    batcher: Batcher[int, int] = Batcher(_task_recorder(tasks), max_batch_size=8, wait_timeout_s=0.01)

    async def alone() -> bool:
        assert await batcher(3) == 6
        return len(tasks) == 1 and tasks[0] is not asyncio.current_task()

    assert run(alone()), "with a wait timeout the request must wait in Serve's batch queue"


def test_outside_a_replica_each_item_is_its_own_batch() -> None:
    calls: list[list[int]] = []
    batcher: Batcher[int, int] = Batcher(_doubler(calls), max_batch_size=8)

    async def together() -> list[int]:
        return list(await asyncio.gather(*(batcher(i) for i in range(3))))

    assert run(together()) == [0, 2, 4]
    assert calls == [[0], [1], [2]]
