"""Golden objects: the Pod, Service and PVC hatchway sends for real commons' options equal the
ones Hatchery would send, whole, except for the differences listed here with their reasons.

Each tests/fixtures/hatchery/golden/*.json holds, for one option of one hatchery.json fixture,
the objects Hatchery's ``createLocalK8sPod``/``buildPod`` build, written out by hand from
pods.go field by field and serialised as Go's encoding/json writes k8s.io/api v0.32.1 types
(the README there cites the lines). The launch goes through the real backend to the emulated
API server with a Fence handing out a fixed key; what is compared is the request body the API
server received, not the dict before it was sent (the emulator records bodies; a real API
server answers with its defaults filled in). The real API server then accepts each case's
objects whole: validation and admission as a cluster has them.
"""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from launcher.kubernetes import KubernetesBackend, specs
from launcher.options import load_hatchery_file
from launcher.routes import RouteTable
from proxy.settings import Settings
from proxy.settings import kube_settings as kube_config
from tests.fence_contract import FenceContract

from .cluster import Cluster
from .conftest import ApiServer

FIXTURES = Path(__file__).parent.parent / "fixtures" / "hatchery"
CASES = {path.stem: json.loads(path.read_text())
         for path in sorted((FIXTURES / "golden").glob("*.json"))}

# -- what hatchway adds, and why (nothing else may differ) ----------------------------------

HATCHWAY_LABELS = {  # pods, Services and PVCs
    specs.MANAGED_BY: "every replica lists and watches its own objects by this selector",
    specs.USER_LABEL: "selects one user's objects (the escaped name, or a digest when too long)",
    specs.USER_ID_LABEL: "a digest of the real name: one-to-one where Hatchery's escaping is not",
}
HATCHWAY_POD_ANNOTATIONS = {  # pods and PVCs (a PVC copies the pod's, as Hatchery's does)
    specs.USER_ANNOTATION: "the exact user name, so ownership is checked without unescaping",
    specs.OPTION_ANNOTATION: "the option launched, for status after a restart of the gateway",
    specs.OPTION_NAME_ANNOTATION: "its name, for the operator's view once hatchery.json drops it",
}
HATCHWAY_SERVICE_ANNOTATIONS = {
    specs.USER_ANNOTATION: "the route's user, read by every replica's Service watch",
    specs.GEN3_USER_ANNOTATION: "Hatchery's own record of the user, as on its pods and PVCs",
    specs.REWRITE_ANNOTATION: "the route's path rewrite, without parsing the Mapping YAML",
    specs.TLS_ANNOTATION: "whether the route speaks TLS to the pod, likewise",
}
HATCHWAY_SELECTOR = {  # Service spec.selector
    specs.USER_ID_LABEL: "security: a Service never selects the pod of another user whose "
                         "name escapes to the same app label (Hatchery's escaping collides)",
}
# Go's zero values the API server ignores and fills itself (metav1.Time marshals as null;
# Status structs have no omitempty effect): present in the golden, never sent by us.
# So the golden's ``metadata.creationTimestamp`` must be null, and its ``status`` this:
GO_ZERO_STATUS: dict[str, dict[str, Any]] = {
    "Pod": {}, "Service": {"loadBalancer": {}}, "PersistentVolumeClaim": {}}
# A volume with no source (Hatchery's shared-data and gen3) is stored by the API server as
# ``emptyDir: {}`` (SetDefaults_Volume, pkg/apis/core/v1/defaults.go); hatchway writes that.
SERVER_DEFAULT_VOLUME_SOURCE: dict[str, Any] = {"emptyDir": {}}


def diff(ours: Any, golden: Any, path: str = "") -> list[str]:
    """Every path where the two objects differ, for a failure message a reader can act on."""
    if isinstance(ours, dict) and isinstance(golden, dict):
        out = []
        for key in sorted(set(ours) | set(golden)):
            where = f"{path}.{key}" if path else key
            if key not in golden:
                out.append(f"{where}: only hatchway's ({ours[key]!r})")
            elif key not in ours:
                out.append(f"{where}: only Hatchery's ({golden[key]!r})")
            else:
                out += diff(ours[key], golden[key], where)
        return out
    if isinstance(ours, list) and isinstance(golden, list) and len(ours) == len(golden):
        return [d for i, (a, b) in enumerate(zip(ours, golden, strict=True))
                for d in diff(a, b, f"{path}[{i}]")]
    return [] if ours == golden else [f"{path}: hatchway {ours!r} != Hatchery {golden!r}"]


def assert_same(ours: dict[str, Any], golden: dict[str, Any]) -> None:
    differences = diff(ours, golden)
    assert not differences, "hatchway differs from Hatchery:\n" + "\n".join(differences)


def without_go_zero_values(golden: dict[str, Any]) -> dict[str, Any]:
    golden = copy.deepcopy(golden)
    assert golden["metadata"].pop("creationTimestamp") is None
    assert golden.pop("status") == GO_ZERO_STATUS[golden["kind"]]
    return golden


def without_hatchways_own(obj: dict[str, Any], user: str) -> dict[str, Any]:
    """``obj`` without the labels, annotations and selector keys listed above; each must be
    there with the value its reason implies."""
    obj = copy.deepcopy(obj)
    meta = obj["metadata"]
    assert {k: meta["labels"].pop(k) for k in HATCHWAY_LABELS} == {
        specs.MANAGED_BY: specs.HATCHWAY, specs.USER_LABEL: specs.user_label(user),
        specs.USER_ID_LABEL: specs.user_id(user)}
    own = HATCHWAY_SERVICE_ANNOTATIONS if obj["kind"] == "Service" else HATCHWAY_POD_ANNOTATIONS
    popped = {k: meta["annotations"].pop(k) for k in own}
    assert popped[specs.USER_ANNOTATION] == user
    if obj["kind"] == "Service":
        assert popped[specs.GEN3_USER_ANNOTATION] == user
        assert {k: obj["spec"]["selector"].pop(k) for k in HATCHWAY_SELECTOR} == {
            specs.USER_ID_LABEL: specs.user_id(user)}
    return obj


def with_server_defaults(pod: dict[str, Any]) -> dict[str, Any]:
    pod = copy.deepcopy(pod)
    for volume in pod["spec"]["volumes"]:
        if set(volume) == {"name"}:
            volume.update(copy.deepcopy(SERVER_DEFAULT_VOLUME_SOURCE))
    return pod


# -- launching through the real backend -----------------------------------------------------

Launched = Callable[[str], Any]


@pytest.fixture
async def launched(api: ApiServer, fence: FenceContract,
                   kube_settings: Callable[..., Settings]) -> AsyncIterator[Launched]:
    """Launch a golden case's option for its user; answer (case, {plural: body sent})."""
    backends: list[KubernetesBackend] = []

    async def launch(name: str) -> tuple[dict[str, Any], dict[str, dict[str, Any] | None]]:
        case = CASES[name]
        hatchery = load_hatchery_file(str(FIXTURES / case["fixture"]))
        (option,) = [o for o in hatchery.options if o.name == case["option"]]
        settings = kube_settings(api_keys=True, fence_url=fence.url + "/user/",
                                 gen3_endpoint=case["gen3_endpoint"])
        backend = KubernetesBackend(RouteTable(), kube_config(settings), hatchery)
        backends.append(backend)
        await backend.start()
        fence.next_keys.append((case["api_key_id"], case["api_key"]))
        await backend.launch(case["user"], option, fence.user_token(case["user"]),
                             pay_model_id=case["bmh_workspace_id"])
        sent: dict[str, dict[str, Any] | None] = {}
        for plural in ("pods", "services", "persistentvolumeclaims"):
            bodies = api.emulator.sent(plural)
            assert len(bodies) <= 1
            sent[plural] = bodies[0] if bodies else None
        return case, sent

    yield launch
    for backend in backends:
        await backend.close()


def test_there_are_golden_cases() -> None:
    assert len(CASES) >= 2


@pytest.mark.emulated
@pytest.mark.parametrize("name", CASES)
async def test_pod_is_the_one_hatchery_builds(launched: Launched, name: str) -> None:
    case, sent = await launched(name)
    ours = without_hatchways_own(sent["pods"], case["user"])
    golden = with_server_defaults(without_go_zero_values(case["pod"]))
    assert_same(ours, golden)


@pytest.mark.emulated
@pytest.mark.parametrize("name", CASES)
async def test_service_is_the_one_hatchery_builds(launched: Launched, name: str) -> None:
    case, sent = await launched(name)
    ours = without_hatchways_own(sent["services"], case["user"])
    assert_same(ours, without_go_zero_values(case["service"]))


@pytest.mark.emulated
@pytest.mark.parametrize("name", CASES)
async def test_claim_is_the_one_hatchery_builds(launched: Launched, name: str) -> None:
    case, sent = await launched(name)
    if case["claim"] is None:
        assert sent["persistentvolumeclaims"] is None
        return
    ours = without_hatchways_own(sent["persistentvolumeclaims"], case["user"])
    assert_same(ours, without_go_zero_values(case["claim"]))


@pytest.mark.parametrize("name", CASES)
async def test_the_real_api_server_accepts_every_object(
        cluster: Cluster, fence: FenceContract, kube_settings: Callable[..., Settings],
        name: str) -> None:
    case = CASES[name]
    hatchery = load_hatchery_file(str(FIXTURES / case["fixture"]))
    (option,) = [o for o in hatchery.options if o.name == case["option"]]
    settings = kube_settings(api_keys=True, fence_url=fence.url + "/user/",
                             gen3_endpoint=case["gen3_endpoint"], namespace=cluster.namespace)
    backend = KubernetesBackend(RouteTable(), kube_config(settings), hatchery)
    await backend.start()
    try:
        await backend.launch(case["user"], option, fence.user_token(case["user"]),
                             pay_model_id=case["bmh_workspace_id"])
    finally:
        await backend.close()
    assert await cluster.names("pods") == [case["pod"]["metadata"]["name"]]
    assert await cluster.names("services") == [case["service"]["metadata"]["name"]]
    claims = [] if case["claim"] is None else [case["claim"]["metadata"]["name"]]
    assert await cluster.names("persistentvolumeclaims") == claims
