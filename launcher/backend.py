"""What every backend (local processes, Kubernetes pods) offers the API, and what it reports.

The API never asks a backend on the proxy's hot path: backends publish where each workspace
lives into the route table (``launcher.routes.RouteTable``) and the relay reads only that.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from .lifetime import portal_fields
from .options import HatcheryConfig, WorkspaceOption

NOT_FOUND, LAUNCHING, RUNNING, STOPPED, TERMINATING = (
    "Not Found", "Launching", "Running", "Stopped", "Terminating",
)


@dataclass
class WorkspaceStatus:
    """Hatchery's ``/status`` body. ``lastActivityTime`` is filled in by the API from the
    proxy's activity tracker, not by the backend; ``started_ms`` and ``max_age_ms`` (a
    Running workspace's) are not in the body but shape the portal's warning
    (launcher.lifetime)."""

    status: str = NOT_FOUND
    conditions: list[dict[str, Any]] = field(default_factory=list)
    container_states: list[dict[str, Any]] = field(default_factory=list)
    idle_time_limit: int = 0  # Go's zero value: Hatchery fills it only when Running
    workspace_type: str = "Kubernetes"
    detail: str = ""  # a human sentence (exit status, failure reason); not in Hatchery's shape
    started_ms: int = 0  # epoch ms the workspace started, 0 unknown
    max_age_ms: int = 0  # it is stopped this long after it started, 0 never

    def to_json(self, last_activity_ms: int = 0) -> dict[str, Any]:
        idle_ms, last_ms = portal_fields(self.idle_time_limit, last_activity_ms,
                                         self.started_ms, self.max_age_ms)
        body: dict[str, Any] = {
            "status": self.status,
            # Go's nil slices: null unless the backend reported some
            "conditions": self.conditions or None,
            "containerStates": self.container_states or None,
            "idleTimeLimit": idle_ms,
            "lastActivityTime": last_ms,
            "workspaceType": self.workspace_type,
        }
        if self.detail:
            body["message"] = self.detail
        return body


@dataclass(frozen=True)
class WorkspaceRecord:
    """One workspace as the operator's view lists it: whose, from which option (its name as
    launched: the option may have left hatchery.json since), since when, on which pay model."""

    user: str
    status: str = ""  # as /status says it (Running, Launching, Stopped, Terminating)
    option_id: str = ""
    option_name: str = ""  # "" when the backend did not record it (a pod from before)
    started_at: float = 0.0  # epoch seconds; 0: unknown
    pay_model_id: str = ""  # Hatchery's bmh_workspace_id


class Backend(Protocol):
    """Starts, reports and stops one workspace per user; also declares what the API's
    health, progress and start-up reports may ask of it (None: nothing to say)."""

    name: str
    isolation: str  # how users are kept apart ("uid", "sandbox", "shared", "pods")

    def health(self) -> dict[str, Any] | None:
        """Detail for ``/_status``; ``{"healthy": False, ...}`` makes it answer 503."""

    def progress(self, user: str) -> AsyncIterator[dict[str, Any]] | None:
        """The launch as JupyterHub-shaped events; None: the API polls ``status``."""

    def routes_pending(self) -> list[str]:
        """What the route table still waits for before it is whole (readiness): e.g. watches
        that have not listed yet. Empty: every route this backend knows is published."""

    def isolation_summary(self) -> str | None:
        """One sentence for start-up about how users are kept apart (None: nothing to say)."""

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

    async def workspaces(self) -> list[WorkspaceRecord]:
        """Every workspace this backend runs (any state but gone), for the operator's view."""

    def use_hatchery(self, config: HatcheryConfig) -> None:
        """hatchery.json changed: later launches read ``config``; running ones keep theirs."""


@runtime_checkable
class SharedActivity(Protocol):
    """A backend whose replicas share users' activity and elect one culler (Kubernetes: a
    Service annotation and a Lease). Backends without it cull alone from local activity."""

    default_idle_ms: int  # idle limit for options without their own; 0: none

    def attach_activity(self, local_ms: Callable[[str], int]) -> None:
        """This replica's activity tracker, to publish for the others (before ``start``)."""

    def last_activity_ms(self, user: str) -> int:
        """The latest activity any replica has seen for ``user`` (epoch ms, 0: none)."""

    @property
    def is_leader(self) -> bool:
        """Whether this replica is the one that culls."""

