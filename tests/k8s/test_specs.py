"""Golden objects: what hatchway creates for Hatchery's Jupyter example entry, field by field as
Hatchery's buildPod/createLocalK8sPod write them (Go structs, omitempty), plus hatchway's
labels — and every generated object validates against the Kubernetes schemas."""

from __future__ import annotations

import copy
import re
from typing import Any

import kubernetes_validate
import pytest

from launcher.ambassador import mapping_annotation
from launcher.kubernetes import specs
from launcher.options import HatcheryConfig, parse_hatchery_config

K8S_VERSION = "1.33"
USER = "alice@example.org"
ESC = "alice-40example-2eorg"

JUPYTER = {  # DESIGN.md's typical Jupyter entry, as Gen3's hatchery docs configure it
    "target-port": 8888, "cpu-limit": "1.0", "memory-limit": "512Mi",
    "name": "Jupyter Notebook Bio Python", "image": "quay.io/occ_data/jupyternotebook:1.7.2",
    "env": {"FRAME_ANCESTORS": "https://commons.example.org"},
    "args": ["--NotebookApp.base_url=/lw-workspace/proxy/", "--NotebookApp.password=''",
             "--NotebookApp.token=''"],
    "command": ["start-notebook.sh"], "path-rewrite": "/lw-workspace/proxy/",
    "use-tls": "false", "ready-probe": "/lw-workspace/proxy/", "user-uid": 1000,
    "fs-gid": 100, "user-volume-location": "/home/jovyan/pd",
    "gen3-volume-location": "/home/jovyan/.gen3", "friends": [],
}
SIDECAR = {
    "cpu-limit": "1.0", "memory-limit": "256Mi", "image": "quay.io/cdis/gen3fuse-sidecar:0.1.2",
    "env": {"NAMESPACE": "commons", "HOSTNAME": "commons.example.org"}, "args": [],
    "command": ["su", "-c", "/home/jovyan/sidecarDockerrun.sh", "-s", "/bin/sh", "jovyan"],
    "lifecycle-pre-stop": ["su", "-c", "cd /data; for f in *; do fusermount -u $f; rm -rf $f; "
                           "done", "-s", "/bin/sh", "jovyan"],
}


def config(entry: dict[str, Any] | None = None, **top: Any) -> HatcheryConfig:
    doc = {"user-namespace": "jupyter-pods", "user-volume-size": "10Gi", "sidecar": SIDECAR,
           "containers": [entry or JUPYTER], **top}
    return parse_hatchery_config(doc, "hatchery.json")


def pod_for(entry: dict[str, Any] | None = None, **top: Any) -> dict[str, Any]:
    cfg = config(entry, **top)
    return specs.pod_spec(USER, cfg.options[0], cfg, "jupyter-pods", "commons.example.org")


def validate(obj: dict[str, Any]) -> None:
    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


# hatchway's own labels; the user-id digest is one-to-one where Hatchery's escaping is not.
HATCHWAY_LABELS = {"app.kubernetes.io/managed-by": "hatchway", "hatchway.gen3.org/user": ESC,
                   "hatchway.gen3.org/user-id": specs.user_id(USER)}


def test_jupyter_pod_matches_hatchery_field_by_field() -> None:
    cfg = config()
    pod = specs.pod_spec(USER, cfg.options[0], cfg, "jupyter-pods", "commons.example.org")
    assert pod["metadata"] == {
        "name": f"hatchery-{ESC}", "namespace": "jupyter-pods",
        "labels": {"app": f"hatchery-{ESC}", **HATCHWAY_LABELS},
        "annotations": {"gen3username": USER, "hatchway.gen3.org/user": USER,
                        "hatchway.gen3.org/option": cfg.options[0].id,
                        "hatchway.gen3.org/option-name": cfg.options[0].name},
    }
    spec = pod["spec"]
    assert spec["securityContext"] == {"runAsUser": 1000, "fsGroup": 100}
    assert spec["enableServiceLinks"] is False
    assert spec["restartPolicy"] == "Never"
    assert spec["nodeSelector"] == {"role": "jupyter"}
    assert spec["tolerations"] == [{"key": "role", "operator": "Equal", "value": "jupyter",
                                    "effect": "NoSchedule"}]
    assert spec["volumes"] == [
        {"name": "shared-data", "emptyDir": {}}, {"name": "gen3", "emptyDir": {}},
        {"name": "user-data", "persistentVolumeClaim": {"claimName": f"claim-{ESC}"}}]
    sidecar, main = spec["containers"]
    assert sidecar == {
        "name": "fuse-container",
        "image": "quay.io/cdis/gen3fuse-sidecar:0.1.2",
        "command": SIDECAR["command"],
        "env": [{"name": "HOSTNAME", "value": "commons.example.org"},
                {"name": "NAMESPACE", "value": "commons"},
                {"name": "GEN3_ENDPOINT", "value": "commons.example.org"}],
        "resources": {"limits": {"cpu": "1", "memory": "256Mi"},
                      "requests": {"cpu": "1", "memory": "256Mi"}},
        "volumeMounts": [{"mountPath": "/data", "name": "shared-data",
                          "mountPropagation": "Bidirectional"},
                         {"mountPath": "/.gen3", "name": "gen3"}],
        "lifecycle": {"preStop": {"exec": {"command": SIDECAR["lifecycle-pre-stop"]}}},
        "imagePullPolicy": "Always",
        "securityContext": {"privileged": True, "runAsUser": 0, "runAsGroup": 0},
    }
    assert main == {
        "name": "hatchery-container",
        "image": "quay.io/occ_data/jupyternotebook:1.7.2",
        "command": ["start-notebook.sh"],
        "args": JUPYTER["args"],
        "env": [{"name": "FRAME_ANCESTORS", "value": "https://commons.example.org"},
                {"name": "GEN3_ENDPOINT", "value": "commons.example.org"}],
        "resources": {"limits": {"cpu": "1", "memory": "512Mi"},
                      "requests": {"cpu": "1", "memory": "512Mi"}},
        "volumeMounts": [{"mountPath": "/data", "name": "shared-data",
                          "mountPropagation": "HostToContainer"},
                         {"mountPath": "/home/jovyan/.gen3", "name": "gen3"},
                         {"mountPath": "/home/jovyan/pd", "name": "user-data"}],
        "readinessProbe": {"httpGet": {"path": "/lw-workspace/proxy/", "port": 8888}},
        "lifecycle": {},
        "imagePullPolicy": "IfNotPresent",
        "securityContext": {"privileged": False},
    }
    validate(pod)


def test_jupyter_service_matches_hatchery_field_by_field() -> None:
    option = config().options[0]
    mapping = mapping_annotation(USER, option, "jupyter-pods", "v1")
    svc = specs.service_spec(USER, option, "jupyter-pods", mapping)
    assert svc == {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {
            "name": f"h-{ESC}-s", "namespace": "jupyter-pods",
            "labels": {"app": f"hatchery-{ESC}", **HATCHWAY_LABELS},
            "annotations": {
                "getambassador.io/config": mapping,
                "hatchway.gen3.org/user": USER,
                "gen3username": USER,
                "hatchway.gen3.org/rewrite": "/lw-workspace/proxy/",
                "hatchway.gen3.org/tls": "false",
            },
        },
        "spec": {"type": "ClusterIP",
                 "selector": {"app": f"hatchery-{ESC}",
                              "hatchway.gen3.org/user-id": specs.user_id(USER)},
                 "ports": [{"name": f"hatchery-{ESC}", "protocol": "TCP", "port": 80,
                            "targetPort": 8888}]},
    }
    assert f"service: h-{ESC}-s.jupyter-pods.svc.cluster.local:80" in mapping
    validate(svc)


def test_jupyter_claim_matches_hatchery_field_by_field() -> None:
    pod = pod_for()
    claim = specs.claim_spec(USER, pod, "10Gi")
    assert claim == {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": f"claim-{ESC}", "labels": pod["metadata"]["labels"],
                     "annotations": pod["metadata"]["annotations"]},
        "spec": {"accessModes": ["ReadWriteOnce"],
                 "resources": {"requests": {"storage": "10Gi"}}},
    }
    validate(claim)


def test_shared_memory_adds_a_memory_volume_mounted_at_dev_shm() -> None:
    pod = pod_for({**JUPYTER, "use-shared-memory": "true"})
    assert {"name": "dshm", "emptyDir": {"medium": "Memory"}} in pod["spec"]["volumes"]
    sidecar = pod["spec"]["containers"][0]
    assert {"mountPath": "/dev/shm", "name": "dshm"} in sidecar["volumeMounts"]
    validate(pod)


def test_skip_node_selector_drops_selector_and_toleration() -> None:
    pod = pod_for(**{"skip-node-selector": True})
    assert "nodeSelector" not in pod["spec"] and "tolerations" not in pod["spec"]
    validate(pod)


def test_gpu_true_asks_for_one_gpu_in_limits_and_requests() -> None:
    main = pod_for({**JUPYTER, "gpu": True})["spec"]["containers"][1]
    assert main["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert main["resources"]["requests"]["nvidia.com/gpu"] == "1"


@pytest.mark.parametrize("skip", [False, True])
def test_gpu_true_replaces_the_placement_as_hatchery_does(skip: bool) -> None:
    pod = pod_for({**JUPYTER, "gpu": True}, **{"skip-node-selector": skip})
    assert pod["spec"]["nodeSelector"] == {"role": "gpu"}
    assert pod["spec"]["tolerations"] == [
        {"key": "role", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"},
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    validate(pod)


def test_gpu_false_keeps_the_jupyter_placement() -> None:
    pod = pod_for({**JUPYTER, "gpu": False})
    assert pod["spec"]["nodeSelector"] == {"role": "jupyter"}
    assert "nvidia.com/gpu" not in pod["spec"]["containers"][1]["resources"]["limits"]


def test_quantities_are_sent_canonical_as_client_go_marshals_them() -> None:
    pod = pod_for({**JUPYTER, "cpu-limit": "0.8", "memory-limit": "1024Mi"},
                  sidecar={**SIDECAR, "cpu-limit": "0.1", "memory-limit": "0.5Gi"})
    sidecar, main = pod["spec"]["containers"]
    assert main["resources"]["limits"] == {"cpu": "800m", "memory": "1Gi"}
    assert sidecar["resources"]["requests"] == {"cpu": "100m", "memory": "512Mi"}


def test_a_quantity_kubernetes_cannot_read_is_left_for_the_api_server_to_refuse() -> None:
    main = pod_for({**JUPYTER, "cpu-limit": "lots"})["spec"]["containers"][1]
    assert main["resources"]["limits"]["cpu"] == "lots"


def test_lifecycle_hooks_pull_policy_and_group_are_honoured() -> None:
    pod = pod_for({**JUPYTER, "lifecycle-pre-stop": ["stop.sh"],
                   "lifecycle-post-start": ["start.sh", "now"], "pull_policy": "Always",
                   "group-uid": 100})
    main = pod["spec"]["containers"][1]
    assert main["lifecycle"] == {"preStop": {"exec": {"command": ["stop.sh"]}},
                                 "postStart": {"exec": {"command": ["start.sh", "now"]}}}
    assert main["imagePullPolicy"] == "Always"
    assert pod["spec"]["securityContext"] == {"runAsUser": 1000, "runAsGroup": 100,
                                              "fsGroup": 100}
    validate(pod)


def test_friends_are_appended_after_the_workspace_container() -> None:
    friend = {"name": "db", "image": "postgres:16", "env": [{"name": "X", "value": "1"}]}
    pod = pod_for({**JUPYTER, "friends": [friend]})
    assert [c["name"] for c in pod["spec"]["containers"]] == [
        "fuse-container", "hatchery-container", "db"]
    assert pod["spec"]["containers"][2] == {**friend, "resources": {}}  # Go's empty struct
    validate(pod)


def test_friends_are_sent_as_go_reencodes_a_kubernetes_container() -> None:
    friend = {"image": "ubuntu:18.04", "name": "f", "resources": {"requests": {"cpu": 0.25},
                                                                  "limits": {"cpu": 2}},
              "readinessProbe": {"exec": {"command": ["true"], "periodSeconds": 10}},
              "notAField": 1}
    (sent,) = pod_for({**JUPYTER, "friends": [friend]})["spec"]["containers"][2:]
    assert sent == {"name": "f", "image": "ubuntu:18.04",
                    "resources": {"limits": {"cpu": "2"}, "requests": {"cpu": "250m"}},
                    "readinessProbe": {"exec": {"command": ["true"]}}}


def test_no_sidecar_without_a_sidecar_image() -> None:
    cfg = parse_hatchery_config({"containers": [JUPYTER]}, "hatchery.json")
    pod = specs.pod_spec(USER, cfg.options[0], cfg, "ns")
    assert [c["name"] for c in pod["spec"]["containers"]] == ["hatchery-container"]
    assert pod["spec"]["containers"][0]["env"] == [
        {"name": "FRAME_ANCESTORS", "value": "https://commons.example.org"},
        {"name": "GEN3_ENDPOINT"}]  # Go leaves an empty value out
    validate(pod)


def test_no_user_volume_without_a_user_volume_location() -> None:
    entry = copy.deepcopy(JUPYTER)
    del entry["user-volume-location"]
    pod = pod_for(entry)
    assert all(v["name"] != "user-data" for v in pod["spec"]["volumes"])
    assert not specs.needs_claim(config(entry).options[0])


LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")  # Kubernetes' rule


@pytest.mark.parametrize("user", ["alice", "a" * 80, "-odd-", "Bob.Smith@x.org"])
def test_user_label_is_always_a_valid_label_value(user: str) -> None:
    value = specs.user_label(user)
    assert LABEL_VALUE.fullmatch(value) and 0 < len(value) <= 63


def test_user_label_is_the_escaped_name_when_that_is_valid() -> None:
    assert specs.user_label(USER) == ESC
