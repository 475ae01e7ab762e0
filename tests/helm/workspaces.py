"""hatchway's Kubernetes backend as a deployed pod runs it, against the real control plane:
authenticated as the chart's ServiceAccount with a TokenRequest token, so only what the
chart-installed Role grants works, and the API server's own 403 fails a test otherwise."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from launcher.kubernetes import KubernetesBackend
from launcher.options import HatcheryConfig
from launcher.routes import RouteTable
from proxy.settings import kube_settings, load_settings

from ..cluster.controlplane import ControlPlane


def service_account_kubeconfig(plane: ControlPlane, namespace: str,
                               name: str = "hatchery-service-account") -> Path:
    """What the kubelet would mount into hatchway's pod: a bound token for its ServiceAccount."""
    return plane.kubeconfig_for_token(plane.service_account_token(namespace, name))


async def start_backend(kubeconfig: Path, users: str, hatchery: HatcheryConfig, state: Path,
                        routes: RouteTable, **kubernetes: Any) -> KubernetesBackend:
    """A hatchway replica's backend for the user namespace ``users``, routing to endpoints
    (the test node's pods, not cluster DNS); no Fence here, so no API keys."""
    settings = load_settings([], environ={}, overrides={
        "backend": "kubernetes", "state_dir": str(state),
        "kubernetes": {"kubeconfig": str(kubeconfig), "namespace": users,
                       "route_to": "endpoints", "api_keys": False, "request_timeout_seconds": 5,
                       "retries": 1, "watch_seconds": 30, **kubernetes}})
    backend = KubernetesBackend(routes, kube_settings(settings), hatchery)
    await backend.start()
    return backend
