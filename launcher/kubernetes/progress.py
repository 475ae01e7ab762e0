"""A launch's progress, from its pod and the pod's Events, as JupyterHub shapes spawn progress:
``{"progress": 0-100, "message": str, "ready": bool, "failed": bool}``.

Each stage the kubelet reports (Scheduled, Pulling, Pulled, Created, Started) moves the bar to
a fixed mark and says the event's own message; the pod turning ready ends the stream with
``ready``; a launch that cannot succeed (see ``pods.failure_reason``) ends it at once with
``failed`` and the reason. The bar never moves backwards, and no message is sent twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .pods import failure_reason, is_ready

STAGES = {"Scheduled": 20, "Pulling": 40, "Pulled": 60, "Created": 70, "Started": 80}
CREATED, PROBING = 10, 90


def message(progress: int, text: str, *, ready: bool = False,
            failed: bool = False) -> dict[str, Any]:
    return {"progress": progress, "message": text, "ready": ready, "failed": failed}


def _when(event: Mapping[str, Any]) -> str:
    return str(event.get("lastTimestamp") or event.get("eventTime")
               or (event.get("metadata") or {}).get("creationTimestamp") or "")


@dataclass
class ProgressTracker:
    """Feed it what the API says; it answers the messages that are new."""

    fail_unschedulable: bool = True
    progress: int = 0
    done: bool = False
    events: list[Mapping[str, Any]] = field(default_factory=list)
    _seen: set[tuple[str, int]] = field(default_factory=set)

    def _advance(self, to: int, text: str) -> dict[str, Any]:
        self.progress = max(self.progress, to)
        return message(self.progress, text)

    def update(self, pod: Mapping[str, Any] | None,
               new_events: Iterable[Mapping[str, Any]] = ()) -> list[dict[str, Any]]:
        if self.done:
            return []
        out: list[dict[str, Any]] = []
        if pod is not None and self.progress < CREATED:
            out.append(self._advance(CREATED, f"workspace pod {pod['metadata']['name']} "
                                              "created, waiting for a node"))
        for event in sorted(new_events, key=_when):
            key = ((event.get("metadata") or {}).get("uid") or
                   (event.get("metadata") or {}).get("name") or "", int(event.get("count") or 1))
            if key in self._seen:
                continue
            self._seen.add(key)
            self.events.append(event)
            stage = STAGES.get(str(event.get("reason")))
            if stage is not None:
                out.append(self._advance(stage, str(event.get("message") or event["reason"])))
        if pod is None:
            self.done = True
            out.append(message(self.progress, "the workspace is gone (terminated or never "
                                              "launched)", failed=True))
        elif (reason := failure_reason(pod, self.events, self.fail_unschedulable)) is not None:
            self.done = True
            out.append(message(100, reason, failed=True))
        elif is_ready(pod):
            self.done = True
            out.append(message(100, "workspace is ready", ready=True))
        elif (pod.get("status") or {}).get("phase") == "Running" and self.progress < PROBING:
            out.append(self._advance(PROBING, "workspace started, waiting for it to answer "
                                              "its readiness probe"))
        return out
