"""A loop of the system (committer, timers, heartbeats, balancing, ...) that ends
while the system runs is logged as critical, however it ended: the cluster's
balancing loop once died of a stray cancellation without a word, and the member
never claimed a shard again."""

from __future__ import annotations

import asyncio
import logging

import pytest

from actors._tasks import Tasks

pytestmark = pytest.mark.anyio


async def _forever() -> None:
    await asyncio.Event().wait()


async def _returns() -> None:
    return None


@pytest.mark.parametrize("ending", ["cancelled", "returned"])
async def test_a_loop_that_ends_while_the_system_runs_is_logged(
    ending: str, caplog: pytest.LogCaptureFixture
) -> None:
    tasks = Tasks(logging.getLogger("actors.test"))
    tasks.state = "running"
    tasks.start(_forever if ending == "cancelled" else _returns)
    (task,) = tasks.tasks
    if ending == "cancelled":
        task.cancel()
    with caplog.at_level(logging.CRITICAL, logger="actors.test"):
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.sleep(0)  # the done callback runs on the next loop turn
    assert [r.levelno for r in caplog.records] == [logging.CRITICAL]
    assert ending in caplog.records[0].getMessage()
    assert tasks.tasks == set()


async def test_loops_stopped_by_close_and_short_tasks_are_quiet(caplog: pytest.LogCaptureFixture) -> None:
    tasks = Tasks(logging.getLogger("actors.test"))
    tasks.state = "running"
    tasks.start(_forever)
    tasks.spawn(_returns)
    with caplog.at_level(logging.CRITICAL, logger="actors.test"):
        await asyncio.sleep(0.01)  # the short task ends: not a loop, nothing to say
        tasks.state = "closing"
        await Tasks.stop(list(tasks.tasks))
        await asyncio.sleep(0)
    assert caplog.records == []
    assert tasks.tasks == set()
