"""Stopping a background task: cancel it and wait until it has ended, so nothing it does
outlives its owner's ``stop()`` (a cancel alone only asks)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` (None: nothing to stop) and wait for it, its CancelledError swallowed."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
