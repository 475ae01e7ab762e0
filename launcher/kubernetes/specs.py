"""The Pod, Service and PersistentVolumeClaim for one user's workspace, as Hatchery builds them
(``buildPod`` and ``createLocalK8sPod`` in Hatchery's pods.go), plus hatchway's own labels.

The dicts are what Hatchery's Go structs serialise to (``omitempty`` fields left out,
quantities canonical, friends re-encoded as k8s.io/api Containers; tests/k8s/test_golden_pod.py
compares whole objects for real commons' options against hand-derived goldens), with
three deliberate differences, each because Hatchery's output would be rejected or re-defaulted
by the API server: volumes without a source are written as the ``emptyDir: {}`` the server
stores for them; a sidecar is added only when hatchery.json configures one (an image), and its
``preStop`` hook only when it has a command; a missing cpu or memory limit is left out instead
of failing the launch. The launch's own variables (``WORKSPACE_FLAVOR``, the Fence API key:
launcher/kubernetes/workspace_env.py) go to both containers after the configured ones and
before ``GEN3_ENDPOINT``, in Hatchery's order; ``bmh_workspace_id`` is the pay model's id.

hatchway's additions, so every replica can find and route its objects from the API alone:
labels ``app.kubernetes.io/managed-by: hatchway``, ``hatchway.gen3.org/user`` and the
``hatchway.gen3.org/user-id`` digest (also in the Service's selector, so it never selects
another user's pod whose name escapes alike); Service annotations with the user name, the path
rewrite and TLS; the user, the option id and its name on the pod.

``gpu: true`` places the pod as Hatchery does: node selector ``role: gpu`` and tolerations
``role=gpu`` and ``nvidia.com/gpu Exists`` instead of the jupyter ones (even with
``skip-node-selector``), and ``nvidia.com/gpu: 1`` in the workspace's limits and requests.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from launcher.backend import WorkspaceRecord
from launcher.gojson import GoDecodeError, canonical_quantity
from launcher.names import (
    app_label,
    claim_name,
    escape,
    hatchery_user,
    pod_name,
    service_name,
)
from launcher.options import HatcheryConfig, WorkspaceOption

MANAGED_BY = "app.kubernetes.io/managed-by"
HATCHWAY = "hatchway"
USER_LABEL = "hatchway.gen3.org/user"
USER_ANNOTATION = "hatchway.gen3.org/user"
REWRITE_ANNOTATION = "hatchway.gen3.org/rewrite"
TLS_ANNOTATION = "hatchway.gen3.org/tls"
OPTION_ANNOTATION = "hatchway.gen3.org/option"
OPTION_NAME_ANNOTATION = "hatchway.gen3.org/option-name"
GEN3_USER_ANNOTATION = "gen3username"  # Hatchery's record of the user on pods and PVCs
WORKSPACE_ID_ANNOTATION = "bmh_workspace_id"  # the pay model's id (or a fresh UUID)
USER_ID_LABEL = "hatchway.gen3.org/user-id"  # a digest of the real name: one-to-one
AMBASSADOR_ANNOTATION = "getambassador.io/config"
HATCHERY_CONTAINER = "hatchery-container"
SIDECAR_CONTAINER = "fuse-container"
DEFAULT_VOLUME_SIZE = "10Gi"
_PULL_POLICIES = ("IfNotPresent", "Always", "Never")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def user_label(user: str) -> str:
    """A label value naming ``user``: the escaped name when it is a valid label value (63
    characters, alphanumeric ends), else a digest of the name."""
    value = escape(user)
    if len(value) <= 63 and _LABEL_VALUE.match(value):
        return value
    return "sha256-" + hashlib.sha256(user.encode()).hexdigest()[:48]


def user_id(user: str) -> str:
    """A label value only ``user`` maps to (Hatchery's escaping is not one-to-one)."""
    return hashlib.sha256(user.encode()).hexdigest()[:40]


def owned_by(obj: Mapping[str, Any] | None, user: str) -> bool:
    """Whether ``obj`` (a pod, Service or PVC named after ``user``) is ``user``'s, by the
    user it records: hatchway's annotation exactly, or Hatchery's ``gen3username`` (the
    HTML-escaped name). An object recording no user is taken as the user's, as Hatchery does."""
    annotations = ((obj or {}).get("metadata") or {}).get("annotations") or {}
    if USER_ANNOTATION in annotations:
        return bool(annotations[USER_ANNOTATION] == user)
    if GEN3_USER_ANNOTATION in annotations:
        return annotations[GEN3_USER_ANNOTATION] in (user, hatchery_user(user))
    return True


def selector(user: str | None = None) -> str:
    """The label selector for hatchway's objects (of one user)."""
    sel = f"{MANAGED_BY}={HATCHWAY}"
    return sel if user is None else f"{sel},{USER_LABEL}={user_label(user)}"


def _labels(user: str) -> dict[str, str]:
    return {"app": app_label(user), MANAGED_BY: HATCHWAY, USER_LABEL: user_label(user),
            USER_ID_LABEL: user_id(user)}


def _env(values: Mapping[str, Any], gen3_endpoint: str,
         extra: Sequence[Mapping[str, str]] = ()) -> list[dict[str, str]]:
    env = [{"name": str(k), "value": str(v)} for k, v in sorted(values.items())]
    env.extend(dict(var) for var in extra)  # the launch's own: WORKSPACE_FLAVOR, API_KEY...
    env.append({"name": "GEN3_ENDPOINT", "value": gen3_endpoint})
    return [{k: v for k, v in var.items() if v != ""} for var in env]  # Go's omitempty


def _quantity(text: str) -> str:
    """``resource.MustParse(text)`` as client-go sends it: canonical ("1.0" → "1", "0.8" →
    "800m", "1024Mi" → "1Gi"). Text Kubernetes cannot parse is passed on for the API server
    to refuse with its own message (Hatchery's MustParse panics)."""
    try:
        return canonical_quantity(text, "")
    except GoDecodeError:
        return text


def _resources(cpu: str, memory: str, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    limits: dict[str, Any] = {}
    if cpu:
        limits["cpu"] = _quantity(cpu)
    if memory:
        limits["memory"] = _quantity(memory)
    limits.update(extra or {})
    return {"limits": dict(limits), "requests": dict(limits)} if limits else {}


def _exec(command: list[str]) -> dict[str, Any]:
    return {"exec": {"command": list(command)}}


def _without_empty(container: dict[str, Any]) -> dict[str, Any]:
    """Go's ``omitempty``; Hatchery's pointer fields (securityContext, lifecycle) stay even
    when empty."""
    return {k: v for k, v in container.items()
            if v is not None and (v not in ("", [], {}) or k in ("securityContext", "lifecycle"))}


_GPU_TOLERATIONS = ({"key": "role", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"},
                   {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"})


def _friend(friend: Mapping[str, Any]) -> dict[str, Any]:
    """A ``friends`` entry as Hatchery sends it: decoded into k8s.io/api's ``Container`` and
    encoded again at load (unknown or misplaced keys dropped, quantities canonical,
    ``resources`` always there); a copy, so no pod shares the config's objects."""
    return dict(json.loads(json.dumps(friend)))


def _gpu(option: WorkspaceOption) -> tuple[dict[str, Any], dict[str, str], list[dict[str, Any]]]:
    """(extra limits, node selector, tolerations) for ``gpu: true``, Hatchery's placement."""
    if not option.gpu:
        return {}, {}, []
    return {"nvidia.com/gpu": "1"}, {"role": "gpu"}, [dict(t) for t in _GPU_TOLERATIONS]


def _sidecar(hatchery: HatcheryConfig, shared_memory: bool, gen3_endpoint: str,
             extra_env: Sequence[Mapping[str, str]] = ()) -> dict[str, Any] | None:
    side = hatchery.sidecar
    if not side.image:
        return None
    mounts = [{"mountPath": "/data", "name": "shared-data", "mountPropagation": "Bidirectional"},
              {"mountPath": "/.gen3", "name": "gen3"}]
    if shared_memory:
        mounts.append({"mountPath": "/dev/shm", "name": "dshm"})
    pre_stop = list(side.lifecycle_pre_stop)
    return _without_empty({
        "name": SIDECAR_CONTAINER,
        "image": side.image,
        "command": list(side.command),
        "args": list(side.args),
        "env": _env(side.env, gen3_endpoint, extra_env),
        "resources": _resources(side.cpu_limit, side.memory_limit),
        "volumeMounts": mounts,
        "lifecycle": {"preStop": _exec(pre_stop)} if pre_stop else None,
        "imagePullPolicy": "Always",
        "securityContext": {"privileged": True, "runAsUser": 0, "runAsGroup": 0},
    })


def _workspace(option: WorkspaceOption, gen3_endpoint: str, gpu_limits: Mapping[str, Any],
               extra_env: Sequence[Mapping[str, str]] = ()) -> dict[str, Any]:
    c = option.container
    mounts = [{"mountPath": "/data", "name": "shared-data", "mountPropagation": "HostToContainer"},
              {"mountPath": c.gen3_volume_location or "/.gen3", "name": "gen3"}]
    if c.user_volume_location:
        mounts.append({"mountPath": c.user_volume_location, "name": "user-data"})
    lifecycle: dict[str, Any] = {}
    if c.lifecycle_pre_stop:
        lifecycle["preStop"] = _exec(list(c.lifecycle_pre_stop))
    if c.lifecycle_post_start:
        lifecycle["postStart"] = _exec(list(c.lifecycle_post_start))
    probe: dict[str, Any] = {"port": option.target_port}
    if option.ready_probe:
        probe = {"path": option.ready_probe, **probe}
    policy = c.pull_policy
    return _without_empty({
        "name": HATCHERY_CONTAINER,
        "image": c.image,
        "command": option.command,
        "args": option.args,
        "env": _env(option.env, gen3_endpoint, extra_env),
        "resources": _resources(c.cpu_limit, c.memory_limit, gpu_limits),
        "volumeMounts": mounts,
        "readinessProbe": {"httpGet": probe},
        "lifecycle": lifecycle,
        "imagePullPolicy": policy if policy in _PULL_POLICIES else "IfNotPresent",
        "securityContext": {"privileged": False},
    })


def pod_spec(user: str, option: WorkspaceOption, hatchery: HatcheryConfig, namespace: str,
             gen3_endpoint: str = "", *, extra_env: Sequence[Mapping[str, str]] = (),
             workspace_id: str = "") -> dict[str, Any]:
    c = option.container
    shared_memory = c.use_shared_memory == "true"
    gpu_limits, gpu_selector, gpu_tolerations = _gpu(option)
    security: dict[str, Any] = {}
    for key, value in (("runAsUser", c.user_uid), ("runAsGroup", c.group_uid),
                       ("fsGroup", c.fs_gid)):
        if value:
            security[key] = value
    volumes: list[dict[str, Any]] = [{"name": "shared-data", "emptyDir": {}},
                                     {"name": "gen3", "emptyDir": {}}]
    if shared_memory:
        volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory"}})
    if c.user_volume_location:
        volumes.append({"name": "user-data",
                        "persistentVolumeClaim": {"claimName": claim_name(user)}})
    containers = [c for c in (_sidecar(hatchery, shared_memory, gen3_endpoint, extra_env),) if c]
    if c.image:
        containers.append(_workspace(option, gen3_endpoint, gpu_limits, extra_env))
    containers.extend(_friend(friend) for friend in c.friends)
    spec: dict[str, Any] = {
        "volumes": volumes,
        "containers": containers,
        "restartPolicy": "Never",
        "securityContext": security,
        "enableServiceLinks": False,
    }
    node_selector: dict[str, str] = {}
    tolerations: list[dict[str, Any]] = []
    if not hatchery.skip_node_selector:
        node_selector["role"] = "jupyter"
        tolerations.append({"key": "role", "operator": "Equal", "value": "jupyter",
                            "effect": "NoSchedule"})
    if gpu_selector:  # GPU placement replaces the default one, as in Hatchery
        node_selector, tolerations = gpu_selector, gpu_tolerations
    if node_selector:
        spec["nodeSelector"] = node_selector
    if tolerations:
        spec["tolerations"] = tolerations
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name(user),
            "namespace": namespace,
            "labels": _labels(user),
            "annotations": {GEN3_USER_ANNOTATION: user, USER_ANNOTATION: user,
                            OPTION_ANNOTATION: option.id, OPTION_NAME_ANNOTATION: option.name,
                            **({WORKSPACE_ID_ANNOTATION: workspace_id} if workspace_id else {})},
        },
        "spec": spec,
    }


def service_spec(user: str, option: WorkspaceOption, namespace: str,
                 mapping: str | None) -> dict[str, Any]:
    """Hatchery's ClusterIP Service, port 80 → target-port; ``mapping`` is the
    ``getambassador.io/config`` annotation (None: not written)."""
    annotations = {USER_ANNOTATION: user, GEN3_USER_ANNOTATION: user,
                   REWRITE_ANNOTATION: option.path_rewrite or "/",
                   TLS_ANNOTATION: "true" if option.container.use_tls.lower() == "true"
                   else "false"}
    if mapping is not None:
        annotations = {AMBASSADOR_ANNOTATION: mapping, **annotations}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": service_name(user), "namespace": namespace,
                     "labels": _labels(user), "annotations": annotations},
        "spec": {
            "type": "ClusterIP",
            # the digest too: a Service never selects a pod of a user whose name escapes alike
            "selector": {"app": app_label(user), USER_ID_LABEL: user_id(user)},
            "ports": [{"name": pod_name(user), "protocol": "TCP", "port": 80,
                       "targetPort": option.target_port}],
        },
    }


def claim_spec(user: str, pod: Mapping[str, Any], size: str) -> dict[str, Any]:
    """The user's data volume, labelled and annotated as the pod; like Hatchery's, it names
    no namespace (the API server takes the one in the request's path)."""
    meta = pod["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": claim_name(user),
                     "labels": dict(meta["labels"]), "annotations": dict(meta["annotations"])},
        "spec": {"accessModes": ["ReadWriteOnce"],
                 "resources": {"requests": {"storage": size or DEFAULT_VOLUME_SIZE}}},
    }


def needs_claim(option: WorkspaceOption) -> bool:
    return bool(option.container.user_volume_location)


def _epoch(stamp: Any) -> float:
    """An RFC 3339 time as the API server writes it (``2024-05-01T12:00:00Z``), 0 if none."""
    if not isinstance(stamp, str) or not stamp:
        return 0.0
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def record(pod: Mapping[str, Any], hatchery: HatcheryConfig) -> WorkspaceRecord | None:
    """What the operator's view shows of one of hatchway's pods (None: it names no user).
    A pod from before the option-name annotation is named by the current config, if its
    option is still there."""
    meta = pod.get("metadata") or {}
    notes = meta.get("annotations") or {}
    user = notes.get(USER_ANNOTATION) or notes.get(GEN3_USER_ANNOTATION)
    if not isinstance(user, str) or not user:
        return None
    option_id = str(notes.get(OPTION_ANNOTATION) or "")
    name = notes.get(OPTION_NAME_ANNOTATION)
    if not isinstance(name, str):
        known = hatchery.option(option_id)
        name = known.name if known is not None else ""
    started = (pod.get("status") or {}).get("startTime") or meta.get("creationTimestamp")
    return WorkspaceRecord(user=user, option_id=option_id, option_name=name,
                           started_at=_epoch(started),
                           pay_model_id=str(notes.get(WORKSPACE_ID_ANNOTATION) or ""))
