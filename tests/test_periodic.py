"""The background loop under the culler, the Lease, the activity sync and Envoy's poller: it
outlives failing steps, and an outage costs the log two lines, not one per interval."""

from __future__ import annotations

import asyncio
import logging

import pytest

from launcher.periodic import Periodic

log = logging.getLogger("test.periodic")


class Steps:
    """A step that fails while ``failing`` is set and counts every call."""

    def __init__(self) -> None:
        self.calls = 0
        self.failing = False
        self.called = asyncio.Event()

    async def __call__(self) -> None:
        self.calls += 1
        self.called.set()
        if self.failing:
            raise ConnectionError("refused")


async def wait_calls(steps: Steps, n: int) -> None:
    async with asyncio.timeout(5):
        while steps.calls < n:
            steps.called.clear()
            await steps.called.wait()


async def test_a_failing_step_does_not_end_the_loop() -> None:
    steps = Steps()
    steps.failing = True
    loop = Periodic("step", steps, 0.01, log=log, at_once=True)
    loop.start()
    await wait_calls(steps, 5)
    await loop.stop()
    assert loop.failures >= 5


async def test_a_run_of_failures_logs_one_warning_and_its_recovery_one_info(
        caplog: pytest.LogCaptureFixture) -> None:
    steps = Steps()
    steps.failing = True
    loop = Periodic("step", steps, 0.01, log=log, at_once=True)
    caplog.set_level(logging.INFO, logger=log.name)
    loop.start()
    await wait_calls(steps, 5)
    steps.failing = False
    await wait_calls(steps, steps.calls + 2)
    await loop.stop()
    lines = [(r.levelno, r.getMessage(), r.exc_info) for r in caplog.records]
    assert lines[0][:2] == (logging.WARNING,
                            "step failed (ConnectionError: refused); retrying every 0.01 s")
    assert lines[0][2] is None  # no traceback
    assert [level for level, _, _ in lines] == [logging.WARNING, logging.INFO]
    assert lines[1][1].startswith("step works again after ")


async def test_the_first_step_waits_one_interval_unless_at_once() -> None:
    later, now = Steps(), Steps()
    waiting = Periodic("later", later, 0.3, log=log)
    eager = Periodic("now", now, 0.3, log=log, at_once=True)
    waiting.start()
    eager.start()
    await wait_calls(now, 1)  # the eager one's first step, and none of the other's
    await waiting.stop()
    await eager.stop()
    assert (later.calls, now.calls) == (0, 1)


async def test_stop_cuts_a_step_under_way() -> None:
    entered = asyncio.Event()

    async def hangs() -> None:
        entered.set()
        await asyncio.Event().wait()  # never set: the step hangs until cut

    loop = Periodic("hangs", hangs, 0.01, log=log, at_once=True)
    loop.start()
    await entered.wait()
    async with asyncio.timeout(1):
        await loop.stop()
