"""Launch progress from a pod and its Events: JupyterHub's message shape, a bar that only
moves forward, and fail-fast reasons in words."""

from __future__ import annotations

from typing import Any

from launcher.kubernetes.progress import ProgressTracker


def pod(phase: str = "Pending", ready: bool = False, waiting: str = "",
        unschedulable: bool = False) -> dict[str, Any]:
    conditions = [{"type": "PodScheduled", "status": "False" if unschedulable else "True"}]
    if unschedulable:
        conditions[0].update(reason="Unschedulable", message="0/3 nodes are available")
    conditions.append({"type": "Ready", "status": "True" if ready else "False"})
    state = {"waiting": {"reason": waiting, "message": "not found"}} if waiting else {}
    return {"metadata": {"name": "hatchery-alice"},
            "status": {"phase": phase, "conditions": conditions,
                       "containerStatuses": [{"name": "hatchery-container", "state": state}]}}


def event(reason: str, message: str, uid: str) -> dict[str, Any]:
    return {"metadata": {"uid": uid}, "reason": reason, "message": message,
            "lastTimestamp": f"2024-01-01T00:00:0{uid}Z"}


def test_messages_have_jupyterhubs_shape() -> None:
    (first,) = ProgressTracker().update(pod())
    assert set(first) == {"progress", "message", "ready", "failed"}
    assert first["ready"] is False and first["failed"] is False


def test_kubelet_stages_move_the_bar_forward_with_their_messages() -> None:
    tracker = ProgressTracker()
    tracker.update(pod())
    msgs = tracker.update(pod(), [event("Pulling", 'Pulling image "x"', "2"),
                                  event("Scheduled", "assigned to node", "1"),
                                  event("Pulled", 'pulled "x"', "3")])
    assert [(m["progress"], m["message"]) for m in msgs] == [
        (20, "assigned to node"), (40, 'Pulling image "x"'), (60, 'pulled "x"')]


def test_a_stage_seen_twice_is_said_once_and_the_bar_never_goes_back() -> None:
    tracker = ProgressTracker()
    tracker.update(pod(), [event("Started", "started", "1")])
    assert tracker.update(pod(), [event("Started", "started", "1"),
                                  event("Scheduled", "late", "2")]) == [
        {"progress": 80, "message": "late", "ready": False, "failed": False}]


def test_ready_pod_ends_with_ready() -> None:
    tracker = ProgressTracker()
    msgs = tracker.update(pod(phase="Running", ready=True))
    assert msgs[-1] == {"progress": 100, "message": "workspace is ready", "ready": True,
                        "failed": False}
    assert tracker.done and tracker.update(pod(phase="Running", ready=True)) == []


def test_image_pull_failure_fails_at_once_with_the_reason() -> None:
    msgs = ProgressTracker().update(pod(waiting="ErrImagePull"))
    assert msgs[-1]["failed"] is True
    assert "ErrImagePull" in msgs[-1]["message"] and "not found" in msgs[-1]["message"]


def test_unschedulable_fails_unless_an_autoscaler_is_adding_a_node() -> None:
    assert ProgressTracker().update(pod(unschedulable=True))[-1]["failed"] is True
    tracker = ProgressTracker()
    msgs = tracker.update(pod(unschedulable=True),
                          [event("TriggeredScaleUp", "pod triggered scale-up", "1")])
    assert not any(m["failed"] for m in msgs) and not tracker.done


def test_unschedulable_can_be_waited_out_by_configuration() -> None:
    tracker = ProgressTracker(fail_unschedulable=False)
    assert not any(m["failed"] for m in tracker.update(pod(unschedulable=True)))


def test_crashed_workspace_fails_with_its_exit_code() -> None:
    crashed = pod(phase="Failed")
    crashed["status"]["containerStatuses"][0]["state"] = {
        "terminated": {"exitCode": 3, "reason": "Error"}}
    msg = ProgressTracker().update(crashed)[-1]
    assert msg["failed"] and "exited with code 3" in msg["message"]


def test_pod_gone_fails_the_stream() -> None:
    tracker = ProgressTracker()
    tracker.update(pod())
    assert tracker.update(None)[-1]["failed"] is True
