"""What every backend (local processes, Kubernetes pods) offers the API, and what it reports.

The API never asks a backend on the proxy's hot path: backends publish where each workspace
lives into the route table (``proxy.routes.RouteTable``) and the relay reads only that.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from .options import WorkspaceOption

NOT_FOUND, LAUNCHING, RUNNING, STOPPED, TERMINATING = (
    "Not Found", "Launching", "Running", "Stopped", "Terminating",
)


@dataclass
class WorkspaceStatus:
    """Hatchery's ``/status`` body. ``lastActivityTime`` is filled in by the API from the
    proxy's activity tracker, not by the backend."""

    status: str = NOT_FOUND
    conditions: list[dict[str, Any]] = field(default_factory=list)
    container_states: list[dict[str, Any]] = field(default_factory=list)
    idle_time_limit: int = 0  # Go's zero value: Hatchery fills it only when Running
    workspace_type: str = "Kubernetes"
    detail: str = ""  # a human sentence (exit status, failure reason); not in Hatchery's shape

    def to_json(self, last_activity_ms: int = 0) -> dict[str, Any]:
        body: dict[str, Any] = {
            "status": self.status,
            # Go's nil slices: null unless the backend reported some
            "conditions": self.conditions or None,
            "containerStates": self.container_states or None,
            "idleTimeLimit": self.idle_time_limit,
            "lastActivityTime": last_activity_ms,
            "workspaceType": self.workspace_type,
        }
        if self.detail:
            body["message"] = self.detail
        return body


class Backend(Protocol):
    """Starts, reports and stops one workspace per user."""

    name: str

    async def start(self) -> None:
        """Begin background work (watches, reapers) and publish known workspaces' routes."""

    async def close(self) -> None:
        """Stop background work. Local workspaces are terminated; pods are left running."""

    async def launch(self, user: str, option: WorkspaceOption, token: str | None, *,
                     pay_model_id: str | None = None) -> None:
        """Start ``user``'s workspace from ``option`` (``pay_model_id``: the current pay
        model's, Hatchery's ``bmh_workspace_id``). Raises WorkspaceExists if one is
        there, BackendUnavailable when the backend cannot be reached, BackendError otherwise."""

    async def status(self, user: str) -> WorkspaceStatus:
        ...

    async def terminate(self, user: str, token: str | None = None) -> bool:
        """Stop ``user``'s workspace; False when there was none. ``token`` (the user's, absent
        when culled) revokes what was minted with it at launch."""
