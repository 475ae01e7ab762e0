"""Hatchery's ``/status`` answer computed from the user's pod, rule for rule as Hatchery's
``podStatus`` (pods.go) does, plus a ``detail`` sentence when the launch has already failed.

No pod → ``Not Found``; ``deletionTimestamp`` → ``Terminating``; phase Failed, Succeeded or
Unknown → ``Stopped``; Pending or Running → ``Running`` when the pod is past Pending and its
``Ready`` and ``PodScheduled`` conditions are all True (then ``idleTimeLimit`` is read from a
container arg ``...shutdown_no_activity_timeout=<s>`` × 1000), else ``Launching`` with the
conditions and container states. A pod with no phase yet (just created, unscheduled) is
``Launching``; Hatchery answers an empty status there. A Running pod's ``started_ms`` is its
``creationTimestamp`` (what its maximum age counts from).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from launcher.backend import LAUNCHING, NOT_FOUND, RUNNING, STOPPED, TERMINATING, WorkspaceStatus
from launcher.idle import pod_idle_limit_ms

from .pods import failure_reason, is_ready


def idle_time_limit(pod: Mapping[str, Any]) -> int:
    """Milliseconds, by Hatchery's rule (launcher.idle), 0 when there is none."""
    return pod_idle_limit_ms(c.get("args") or []
                             for c in (pod.get("spec") or {}).get("containers") or [])


def created_ms(pod: Mapping[str, Any]) -> int:
    """The pod's ``creationTimestamp`` (RFC 3339) in epoch ms, 0 when absent or unreadable."""
    stamp = str((pod.get("metadata") or {}).get("creationTimestamp") or "")
    try:
        when = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return 0
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return int(when.timestamp() * 1000)


def workspace_status(pod: Mapping[str, Any] | None,
                     fail_unschedulable: bool = True) -> WorkspaceStatus:
    if pod is None:
        return WorkspaceStatus(status=NOT_FOUND, idle_time_limit=0)
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return WorkspaceStatus(status=TERMINATING, idle_time_limit=0)
    status = pod.get("status") or {}
    phase = status.get("phase") or ""
    if phase in ("Failed", "Succeeded", "Unknown"):
        return WorkspaceStatus(status=STOPPED, idle_time_limit=0,
                               detail=failure_reason(pod, [], fail_unschedulable) or "")
    if is_ready(pod):
        return WorkspaceStatus(status=RUNNING, idle_time_limit=idle_time_limit(pod),
                               started_ms=created_ms(pod))
    return WorkspaceStatus(
        status=LAUNCHING,
        idle_time_limit=0,
        conditions=[{"type": c.get("type", ""), "status": c.get("status", "")}
                    for c in status.get("conditions") or []],
        container_states=[{"name": c.get("name", ""), "state": c.get("state") or {},
                           "ready": bool(c.get("ready"))}
                          for c in status.get("containerStatuses") or []],
        detail=failure_reason(pod, [], fail_unschedulable) or "",
    )
