"""What a launch adds to both containers' environment, in Hatchery's order (hatchery.go
``launch`` then pods.go ``createLocalK8sPod``): ``WORKSPACE_FLAVOR`` always (empty when none:
Go's ``omitempty`` then writes the name alone), then ``API_KEY`` and ``API_KEY_ID``; and the
``bmh_workspace_id`` annotation: the current pay model's id, else a fresh UUID (``buildPod``)."""

from __future__ import annotations

import uuid

from launcher.fence_keys import ApiKey
from launcher.options import WorkspaceOption


def workspace_flavor(option: WorkspaceOption) -> str:
    """Hatchery's ``getWorkspaceFlavor``: nextflow, a licensed flavor, jupyter (by name) or
    ""."""
    if option.container.nextflow_config.enabled:
        return "nextflow"
    if option.container.license.enabled:
        return option.container.license.workspace_flavor
    return "jupyter" if "jupyter" in option.name.lower() else ""


def launch_env(option: WorkspaceOption, key: ApiKey | None) -> list[dict[str, str]]:
    env = [{"name": "WORKSPACE_FLAVOR", "value": workspace_flavor(option)}]
    if key is not None:
        env += [{"name": "API_KEY", "value": key.api_key},
                {"name": "API_KEY_ID", "value": key.key_id}]
    return env


def workspace_id(pay_model_id: str | None) -> str:
    return pay_model_id or str(uuid.uuid4())
