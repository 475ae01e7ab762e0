"""The swap from Hatchery + Ambassador to hatchway in gen3-helm's umbrella, and back, on the real
API server, by exactly the commands deploy/README.md gives (read out of it, run by bash with the
helm and kubectl built by ``make cluster helm``).

The cluster starts as gen3-helm leaves it: release ``gen3`` in a commons namespace of an
umbrella laid out as gen3-helm's (``helm/gen3`` with ``file://../<chart>`` subcharts; the
hatchery and ambassador stand-ins of tests/helm/fixtures), and in its ``jupyter-pods-<ns>`` the
objects a Go Hatchery made (tests/fixtures/hatchery/golden: its Pod, Service with the v1 Mapping
annotation, and PVC, for alice; the workspace container runs the test node's demo program) plus
bob's volume from a workspace since stopped. Then: no volume is lost either way,
``manifest-hatchery`` keeps every key, and hatchway (its backend, as the chart's
ServiceAccount under the chart's Role) reports alice's workspace Running and routes her to it.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from launcher.backend import RUNNING
from launcher.options import parse_hatchery_config
from launcher.routes import RouteTable

from ..cluster.controlplane import ControlPlane
from ..k8s.cluster import Cluster
from ..k8s.conftest import eventually
from ..k8s.kubelet import DEFAULT_IMAGES, DEMO_IMAGE
from .chart import REPO, UMBRELLA
from .release import claim, claims, ensure_namespace, operator_env, sh
from .workspaces import service_account_kubeconfig, start_backend

README = REPO / "deploy" / "README.md"
GOLDEN = REPO / "tests" / "fixtures" / "hatchery" / "golden" / "gen3-helm-defaults-tutorials.json"
RELEASE = "gen3"  # the README's example, with its commons namespace "default"
ALICE, POD = "alice@example.org", "hatchery-alice-40example-2eorg"
SIDECAR_IMAGE = "quay.io/cdis/ecs-ws-sidecar:master"
PROXY = "/lw-workspace/proxy/"


# -- deploy/README.md, read as an operator reads it -------------------------------------------

def _section(title: str, until: str) -> str:
    text = README.read_text()
    start = text.index(title)
    return text[start:text.index(until, start)]


def _blocks(text: str, lang: str) -> list[str]:
    """The fenced blocks in ``lang``, less the indentation of their fence (list items)."""
    found = re.findall(rf"^( *)```{lang}\n(.*?)^ *```", text, re.S | re.M)
    return ["".join(line.removeprefix(indent) for line in body.splitlines(keepends=True))
            for indent, body in found]


SWAP = _section("## Swapping Hatchery + Ambassador", "**Back to Hatchery")
BACK = _section("**Back to Hatchery", "**Next to Hatchery")


def readme_steps(namespace: str = "default") -> dict[str, str]:
    """The commands of each step, as written; ``namespace`` in the line that names the commons'
    namespace, as an operator fills it in."""
    sh_blocks = _blocks(SWAP, "sh")
    assert len(sh_blocks) == 3, "deploy/README.md's swap steps changed shape: update this test"
    (dependency_update,) = re.findall(r"`(helm dependency update [^`]+)`", SWAP)
    (back,) = _blocks(BACK, "sh")
    variables = sh_blocks[1].splitlines()[0]
    assert variables.startswith("NS=default RELEASE=gen3"), variables
    variables = variables.replace("NS=default", f"NS={namespace}")
    return {"copy": sh_blocks[0], "dependency": _blocks(SWAP, "yaml")[0],
            "dependency update": dependency_update,
            "protect": variables + "\n" + "\n".join(sh_blocks[1].splitlines()[1:]),
            "upgrade": variables + "\n" + sh_blocks[2], "back": variables + "\n" + back}


# -- the operator's checkout and values -------------------------------------------------------

def demo_option(hatchery_block: dict[str, Any]) -> dict[str, Any]:
    """The umbrella's hatchery block with its notebook running the test node's demo program."""
    block = copy.deepcopy(hatchery_block)
    (option,) = block["containers"]
    option.pop("command")
    option.update(image=DEMO_IMAGE, args=["--base-url", PROXY])
    return block


def checkout(where: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """gen3-helm's layout (helm/gen3 + helm/<subchart>) and this repository's deploy/ beside it,
    as the README's commands expect; returns the values and swap values it wrote."""
    helm_dir = where / "gen3-helm" / "helm"
    (helm_dir / "gen3").mkdir(parents=True)
    for sub in ("hatchery", "ambassador"):
        shutil.copytree(UMBRELLA / "charts" / sub, helm_dir / sub)
    chart = yaml.safe_load((UMBRELLA / "Chart.yaml").read_text())
    (helm_dir / "gen3" / "Chart.yaml").write_text(  # as gen3-helm writes its list
        f"apiVersion: v2\nname: {chart['name']}\nversion: {chart['version']}\n"
        "dependencies:\n" + "".join(
            f"  - name: {d['name']}\n    version: \"*\"\n"
            f"    repository: \"file://../{d['name']}\"\n    condition: {d['condition']}\n"
            for d in chart["dependencies"] if d["name"] != "hatchway"))
    (where / "deploy").symlink_to(REPO / "deploy")

    values = yaml.safe_load((UMBRELLA / "values.yaml").read_text())
    values["hatchery"]["hatchery"] = demo_option(values["hatchery"]["hatchery"])
    (where / "values.yaml").write_text(yaml.safe_dump(values, sort_keys=False))
    block = values["hatchery"]["hatchery"]  # one object twice: PyYAML writes an anchor
    swap = {"ambassador": {"enabled": False},
            "hatchery": {"enabled": False, "hatchery": block},
            "hatchway": {"enabled": True, "hatchery": block,
                         "image": {"repository": "registry.example.org/hatchway",
                                   "tag": "0.1.0"}}}
    text = yaml.safe_dump(swap, sort_keys=False)
    assert "&" in text and "*" in text  # the anchor the README asks for
    (where / "swap-values.yaml").write_text(text)
    return values, swap


# -- what a Go Hatchery left in the user namespace ---------------------------------------------

def hatchery_workspace(plane: ControlPlane, users: str) -> None:
    """alice's claim, pod and Service as Go Hatchery sent them (for ``users``, the golden
    objects' namespace filled in); bob's claim only."""
    golden = json.loads(GOLDEN.read_text().replace("jupyter-pods-default", users))
    pod = copy.deepcopy(golden["pod"])
    (notebook,) = [c for c in pod["spec"]["containers"] if c["name"] == "hatchery-container"]
    notebook.pop("command", None)
    notebook.update(image=DEMO_IMAGE, args=["--base-url", PROXY])
    base = f"/api/v1/namespaces/{users}"
    plane.call("POST", f"{base}/persistentvolumeclaims", golden["claim"])
    plane.call("POST", f"{base}/persistentvolumeclaims", claim("claim-bob-40example-2eorg"))
    plane.call("POST", f"{base}/pods", pod)
    plane.call("POST", f"{base}/services", golden["service"])


@dataclass
class Commons:
    """A commons installed by gen3-helm, as its operator's shell reaches it."""

    plane: ControlPlane
    namespace: str
    env: dict[str, str]
    cwd: Path

    @property
    def users(self) -> str:
        return f"jupyter-pods-{self.namespace}"

    def run(self, commands: str) -> str:
        return sh(commands, self.env, self.cwd)

    def manifest_hatchery(self) -> dict[str, Any] | None:
        status, held = self.plane.request(
            "GET", f"/api/v1/namespaces/{self.namespace}/configmaps/manifest-hatchery")
        return dict(json.loads(held["data"]["json"])) if status == 200 else None

    def pod_phase(self) -> str:
        status, pod = self.plane.request("GET", f"/api/v1/namespaces/{self.users}/pods/{POD}")
        return str(pod["status"].get("phase", "")) if status == 200 else ""

    def user_namespace(self) -> dict[str, Any]:
        return dict(self.plane.call("GET", f"/api/v1/namespaces/{self.users}")["metadata"])

    def keeps_namespace(self) -> bool:
        meta = self.user_namespace()
        return (not meta.get("deletionTimestamp") and
                (meta.get("annotations") or {}).get("helm.sh/resource-policy") == "keep")

    def deployments(self) -> set[str]:
        items = self.plane.call(
            "GET", f"/apis/apps/v1/namespaces/{self.namespace}/deployments")["items"]
        return {d["metadata"]["name"] for d in items}

    def claims(self) -> dict[str, str]:
        return claims(self.plane, self.users)


def before_swap(plane: ControlPlane, where: Path, namespace: str) -> Commons:
    """gen3-helm's release with hatchery + ambassador in ``namespace``, and the workspaces
    Hatchery made in its user namespace."""
    checkout(where)
    ensure_namespace(plane, namespace)
    commons = Commons(plane, namespace, operator_env(plane, where), where)
    commons.run(f"helm dependency update gen3-helm/helm/gen3\n"
                f"helm -n {namespace} install {RELEASE} gen3-helm/helm/gen3 -f values.yaml")
    ensure_namespace(plane, commons.users)  # its default ServiceAccount
    hatchery_workspace(plane, commons.users)
    return commons


async def test_swap_to_hatchway_and_back_loses_no_volume_and_serves_hatcherys_workspace(
        control_plane: ControlPlane, tmp_path: Path) -> None:
    commons = before_swap(control_plane, tmp_path / "operator", "commons-swap")
    steps = readme_steps(commons.namespace)
    images = {**DEFAULT_IMAGES, SIDECAR_IMAGE: None}
    async with Cluster(control_plane.url, commons.users, "",
                       control_plane.ssl_context()) as cluster, cluster.kubelet(images=images):
        await eventually(lambda: commons.pod_phase() == "Running", within=30)
        volumes = commons.claims()
        assert set(volumes) == {"claim-alice-40example-2eorg", "claim-bob-40example-2eorg"}
        hatchery_json = commons.manifest_hatchery()
        assert hatchery_json is not None
        assert "hatchery-deployment" in commons.deployments()

        # steps 1-4, as written
        commons.run(steps["copy"])
        chart_file = commons.cwd / "gen3-helm" / "helm" / "gen3" / "Chart.yaml"
        chart_file.write_text(chart_file.read_text() + steps["dependency"])
        commons.run(steps["dependency update"])
        commons.run(steps["protect"])
        out = commons.run(steps["upgrade"])

        assert commons.claims() == volumes, out
        assert all(name in out for name in volumes)  # `kubectl get pvc` showed them
        assert commons.keeps_namespace()
        swapped = commons.manifest_hatchery()
        assert swapped is not None
        assert {k: swapped.get(k) for k in hatchery_json} == hatchery_json
        assert commons.deployments() == {"hatchway"}
        assert commons.pod_phase() == "Running"

        # hatchway, as the chart's ServiceAccount, serves alice's existing workspace
        routes = RouteTable()
        backend = await start_backend(
            service_account_kubeconfig(control_plane, commons.namespace), commons.users,
            parse_hatchery_config(swapped, "manifest-hatchery"), tmp_path / "state", routes,
            dropin_ambassador=True)
        try:
            route = await eventually(lambda: (r := routes.get(ALICE)) and r.ready and r)
            assert (await backend.status(ALICE)).status == RUNNING
            async with aiohttp.ClientSession() as http, http.get(
                    f"http://{route.host}:{route.port}{route.rewrite}api/status") as resp:
                assert resp.status == 200
        finally:
            await backend.close()

        # and back to Hatchery + Ambassador
        out = commons.run(steps["back"])
        assert commons.claims() == volumes, out
        assert commons.keeps_namespace()
        assert commons.manifest_hatchery() == hatchery_json
        assert commons.deployments() == {"hatchery-deployment", "ambassador-deployment"}
        assert commons.pod_phase() == "Running"


OBVIOUS_SWAP = ("helm -n {ns} upgrade gen3 gen3-helm/helm/gen3 -f values.yaml "
                "--set hatchery.enabled=false --set ambassador.enabled=false")


def test_without_the_protect_step_switching_hatchery_off_deletes_the_user_namespace(
        control_plane: ControlPlane, tmp_path: Path) -> None:
    """The README's warning, on the real server: the namespace is marked for deletion (here no
    namespace controller carries it out; in a cluster it takes every PVC with it) and
    manifest-hatchery is gone."""
    commons = before_swap(control_plane, tmp_path, "commons-obvious")
    commons.run(OBVIOUS_SWAP.format(ns=commons.namespace))
    assert commons.user_namespace().get("deletionTimestamp")
    assert commons.manifest_hatchery() is None


def test_the_protect_step_keeps_the_user_namespace_and_manifest_hatchery(
        control_plane: ControlPlane, tmp_path: Path) -> None:
    commons = before_swap(control_plane, tmp_path, "commons-protected")
    volumes, hatchery_json = commons.claims(), commons.manifest_hatchery()
    commons.run(readme_steps(commons.namespace)["protect"])
    commons.run(OBVIOUS_SWAP.format(ns=commons.namespace))
    assert commons.keeps_namespace()
    assert commons.claims() == volumes
    assert commons.manifest_hatchery() == hatchery_json
