"""The chart under test, rendered by a real helm (``make helm`` builds it from the
helm.sh/helm/v4 module into .build/bin), and the rendered pod's files laid out on disk so
hatchway's own loaders read exactly what the pod would.

``render`` runs ``helm template`` on deploy/helm/hatchway alone; ``render_umbrella`` puts the
chart beside stand-ins for gen3-helm's hatchery and ambassador subcharts in an umbrella shaped
like gen3-helm's helm/gen3 (tests/helm/fixtures/gen3/), as an operator's values file reaches it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "hatchway"
UMBRELLA = Path(__file__).parent / "fixtures" / "gen3"
HELM = REPO / ".build" / "bin" / "helm"
RELEASE, NAMESPACE = "gen3", "gen3"  # gen3-helm's docs install release gen3


def helm_binary() -> str:
    """The helm that ``make test`` builds; absent, the tests skip (CI=true: fail)."""
    if HELM.is_file():
        return str(HELM)
    if os.environ.get("CI"):
        pytest.fail(f"{HELM} is missing: `make helm` builds it (make test does)")
    pytest.skip(f"{HELM} is missing: run `make helm`")


def helm(*args: str, check: bool = True, cwd: Path | None = None,
         env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([helm_binary(), *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd, env={**os.environ, **(env or {})})
    if check and done.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{done.stderr}")
    return done


def _set_args(values: Iterable[Path], sets: Mapping[str, Any] | None,
              set_files: Mapping[str, Path] | None) -> list[str]:
    args: list[str] = []
    for path in values:
        args += ["-f", str(path)]
    for key, value in (sets or {}).items():
        args += ["--set-json", f"{key}={json.dumps(value)}"]
    for key, path in (set_files or {}).items():
        args += ["--set-file", f"{key}={path}"]
    return args


@dataclass
class Rendered:
    """The objects one ``helm template`` produced."""

    docs: list[dict[str, Any]]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        (doc,) = [d for d in self.of_kind(kind) if d["metadata"]["name"] == name]
        return doc

    def names(self, kind: str) -> set[str]:
        return {d["metadata"]["name"] for d in self.of_kind(kind)}

    def has(self, kind: str, name: str) -> bool:
        return name in self.names(kind)

    @property
    def deployment(self) -> dict[str, Any]:
        return self.get("Deployment", "hatchway")

    @property
    def pod(self) -> dict[str, Any]:
        return self.deployment["spec"]["template"]  # type: ignore[no-any-return]

    def container(self, name: str = "hatchway") -> dict[str, Any]:
        spec = self.pod["spec"]
        (found,) = [c for c in spec["containers"] + spec.get("initContainers", [])
                    if c["name"] == name]
        return found


def parse(text: str) -> Rendered:
    return Rendered([d for d in yaml.safe_load_all(text) if isinstance(d, dict) and d])


def template_text(*, values: Iterable[Path] = (), sets: Mapping[str, Any] | None = None,
                  set_files: Mapping[str, Path] | None = None, chart: Path = CHART,
                  release: str = RELEASE, namespace: str = NAMESPACE) -> str:
    return helm("template", release, str(chart), "--namespace", namespace,
                *_set_args(values, sets, set_files)).stdout


def render(**kwargs: Any) -> Rendered:
    return parse(template_text(**kwargs))


def render_error(**kwargs: Any) -> str:
    """helm's message when it refuses to render (the chart's own checks)."""
    done = helm("template", RELEASE, str(kwargs.pop("chart", CHART)), "--namespace", NAMESPACE,
                *_set_args(kwargs.pop("values", ()), kwargs.pop("sets", None),
                           kwargs.pop("set_files", None)), check=False)
    assert done.returncode != 0, "helm rendered what it should have refused"
    return done.stderr


def umbrella(dest: Path) -> Path:
    """gen3-helm's umbrella shape with this chart as its ``hatchway`` subchart."""
    root = dest / "gen3"
    shutil.copytree(UMBRELLA, root)
    shutil.copytree(CHART, root / "charts" / "hatchway")
    return root


# -- the pod's files, on disk ----------------------------------------------------------------

@dataclass
class PodFiles:
    """The hatchway container's volumes under ``root``: ConfigMap files written as the kubelet
    would project them, emptyDirs as empty directories. ``path`` maps a path in the pod."""

    root: Path
    mounts: dict[str, Path]  # mountPath in the pod → directory here

    def path(self, in_pod: str) -> Path:
        for mount, here in sorted(self.mounts.items(), key=lambda m: -len(m[0])):
            if in_pod == mount or in_pod.startswith(mount.rstrip("/") + "/"):
                return here / in_pod[len(mount):].lstrip("/")
        raise AssertionError(f"{in_pod} is on no volume of the pod")

    def args(self, container: dict[str, Any]) -> list[str]:
        """The container's args with every path on a volume mapped here."""
        return [str(self.path(a)) if a.startswith("/") else a for a in container["args"]]


def pod_files(rendered: Rendered, root: Path, container: str = "hatchway") -> PodFiles:
    volumes = {v["name"]: v for v in rendered.pod["spec"]["volumes"]}
    mounts: dict[str, Path] = {}
    for mount in rendered.container(container)["volumeMounts"]:
        here = root / mount["name"]
        here.mkdir(parents=True, exist_ok=True)
        volume = volumes[mount["name"]]
        if "configMap" in volume:
            data = rendered.get("ConfigMap", volume["configMap"]["name"])["data"]
            items = volume["configMap"].get("items") or [{"key": k, "path": k} for k in data]
            for item in items:
                (here / item["path"]).write_text(data[item["key"]])
        else:
            assert "emptyDir" in volume, volume
        mounts[mount["mountPath"]] = here
    files = PodFiles(root, mounts)
    # The settings name paths on the pod's emptyDirs (state, Envoy's files): map them too.
    for here in mounts.values():
        for f in here.glob("*.yaml"):
            text = f.read_text()
            for mount, target in mounts.items():
                if volumes_is_empty_dir(rendered, mount, container):
                    text = text.replace(f" {mount}\n", f" {target}\n")
            f.write_text(text)
    return files


def volumes_is_empty_dir(rendered: Rendered, mount_path: str, container: str) -> bool:
    volumes = {v["name"]: v for v in rendered.pod["spec"]["volumes"]}
    (mount,) = [m for m in rendered.container(container)["volumeMounts"]
                if m["mountPath"] == mount_path]
    return "emptyDir" in volumes[mount["name"]]
