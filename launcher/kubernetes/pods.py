"""What a pod's status says, read the way Hatchery and the kubelet mean it: is the workspace
ready, and has its launch already failed (and why, in words a user can act on)?

Failing fast: an image that cannot be pulled, a container that cannot be created or keeps
crashing, or a pod the scheduler cannot place will not heal by waiting, so the user is told at
once instead of after a launch timeout. ``Unschedulable`` is the exception while a cluster
autoscaler or Karpenter has announced a scale-up (events TriggeredScaleUp / Nominated): a new
node is on its way, as Gen3's jupyter node pools routinely do.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

FATAL_WAITING = frozenset({
    "ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull",
    "CrashLoopBackOff", "CreateContainerConfigError", "CreateContainerError",
    "RunContainerError",
})
SCALE_UP_REASONS = frozenset({"TriggeredScaleUp", "Nominated"})


def is_ready(pod: Mapping[str, Any]) -> bool:
    """Hatchery's ``checkPodReadiness``: past Pending, and its Ready and PodScheduled
    conditions (when present) all True."""
    status = pod.get("status") or {}
    if status.get("phase") in ("Pending", None, ""):
        return False
    return all(c.get("status") == "True" for c in status.get("conditions") or []
               if c.get("type") in ("Ready", "PodScheduled"))


def _container_statuses(status: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return list(status.get("initContainerStatuses") or []) + list(
        status.get("containerStatuses") or [])


def _exit(status: Mapping[str, Any]) -> str:
    for cs in _container_statuses(status):
        done = (cs.get("state") or {}).get("terminated")
        if done and (done.get("exitCode") or done.get("reason") not in (None, "Completed")):
            why = f" ({done['reason']})" if done.get("reason") else ""
            message = f": {done['message']}" if done.get("message") else ""
            return f"container {cs.get('name')} exited with code {done.get('exitCode')}{why}" \
                   f"{message}"
    return str(status.get("message") or status.get("reason") or "the pod stopped")


def failure_reason(pod: Mapping[str, Any], events: Iterable[Mapping[str, Any]] = (),
                   fail_unschedulable: bool = True) -> str | None:
    """A sentence saying why this launch cannot succeed, or None while it still may."""
    status = pod.get("status") or {}
    for cs in _container_statuses(status):
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in FATAL_WAITING:
            detail = f": {waiting['message']}" if waiting.get("message") else ""
            return f"container {cs.get('name')} cannot start, {waiting['reason']}{detail}"
    if status.get("phase") == "Failed":
        return f"the workspace stopped: {_exit(status)}"
    if fail_unschedulable:
        for cond in status.get("conditions") or []:
            if (cond.get("type") == "PodScheduled" and cond.get("status") == "False"
                    and cond.get("reason") == "Unschedulable"
                    and not any(e.get("reason") in SCALE_UP_REASONS for e in events)):
                return f"the workspace cannot be scheduled: {cond.get('message') or 'no node fits'}"
    return None
