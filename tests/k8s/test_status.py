"""Hatchery's status strings from a pod, rule for rule (pods.go ``podStatus``)."""

from __future__ import annotations

from typing import Any

import pytest

from launcher.backend import LAUNCHING, NOT_FOUND, RUNNING, STOPPED, TERMINATING
from launcher.kubernetes.status import workspace_status


def pod(phase: str = "Running", ready: str = "True", scheduled: str = "True",
        args: list[str] | None = None, **meta: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "hatchery-alice", **meta},
        "spec": {"containers": [{"name": "fuse-container"},
                                {"name": "hatchery-container", "args": args or []}]},
        "status": {"phase": phase, "conditions": [
            {"type": "PodScheduled", "status": scheduled},
            {"type": "Initialized", "status": "True"},
            {"type": "ContainersReady", "status": ready},
            {"type": "Ready", "status": ready}],
            "containerStatuses": [{"name": "hatchery-container", "ready": ready == "True",
                                   "state": {"running": {"startedAt": "t"}}}]},
    }


def test_no_pod_is_not_found() -> None:
    assert workspace_status(None).status == NOT_FOUND


def test_deletion_timestamp_is_terminating_whatever_the_phase() -> None:
    assert workspace_status(pod(deletionTimestamp="2024-01-01T00:00:00Z")).status == TERMINATING


@pytest.mark.parametrize("phase", ["Failed", "Succeeded", "Unknown"])
def test_finished_phases_are_stopped(phase: str) -> None:
    assert workspace_status(pod(phase=phase)).status == STOPPED


def test_ready_and_scheduled_running_pod_is_running() -> None:
    assert workspace_status(pod()).status == RUNNING


def test_running_pod_not_ready_is_launching_with_conditions_and_container_states() -> None:
    st = workspace_status(pod(ready="False"))
    assert st.status == LAUNCHING
    assert {"type": "Ready", "status": "False"} in st.conditions
    assert st.container_states == [{"name": "hatchery-container", "ready": False,
                                    "state": {"running": {"startedAt": "t"}}}]


def test_pending_pod_is_launching_even_with_all_conditions_true() -> None:
    assert workspace_status(pod(phase="Pending")).status == LAUNCHING


def test_pod_without_a_phase_yet_is_launching() -> None:
    assert workspace_status({"metadata": {"name": "p"}, "status": {}}).status == LAUNCHING


def test_idle_limit_comes_from_the_shutdown_arg_in_milliseconds() -> None:
    st = workspace_status(pod(args=["--ServerApp.shutdown_no_activity_timeout=3600"]))
    assert st.idle_time_limit == 3_600_000
    assert st.to_json()["idleTimeLimit"] == 3_600_000


def test_launch_that_cannot_succeed_says_why() -> None:
    stuck = pod(phase="Pending", ready="False")
    stuck["status"]["containerStatuses"][0]["state"] = {
        "waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}}
    st = workspace_status(stuck)
    assert st.status == LAUNCHING
    assert "ImagePullBackOff" in st.detail
    assert st.to_json()["message"] == st.detail
