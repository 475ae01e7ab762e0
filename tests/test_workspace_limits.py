"""What a local workspace may use of the machine: an option's cpu-limit and memory-limit become
the cgroup v2 files the kubelet would write for the pod, pids and file size come from settings,
and where no cgroup v2 is delegated (this machine: a hybrid v1 host) rlimits are the floor.

The kubelet's and runc's conversions are checked against their own sources' constants
(kubernetes pkg/kubelet/kuberuntime/helpers_linux.go, opencontainers/cgroups utils.go)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from launcher.errors import ConfigError
from launcher.limits import Cgroups, cpu_max, cpu_weight, parse_cpu, shares_to_weight
from launcher.local import LocalBackend
from launcher.options import WorkspaceOption, parse_hatchery_config
from launcher.routes import RouteTable
from launcher.settings import LocalSettings
from proxy.settings import load_settings

from .helpers import eventually

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="per-workspace limits need root")
PREFIX = "/lw-workspace/proxy/"

_DUMP = ("import json, pathlib, resource, time; r = resource;"
         " pathlib.Path('limits.json').write_text(json.dumps({n: r.getrlimit(getattr(r, n))[0]"
         " for n in ('RLIMIT_NPROC', 'RLIMIT_DATA', 'RLIMIT_FSIZE')})); time.sleep(30)")


def option(**entry: Any) -> WorkspaceOption:
    entry.setdefault("name", "limited")
    entry.setdefault("command", [sys.executable, "-c", _DUMP])
    return parse_hatchery_config({"containers": [entry]}, "test").options[0]


def text(path: Path) -> str:
    return path.read_text() if path.exists() else ""


async def written(path: Path) -> str:
    await eventually(lambda: bool(text(path)), within=20, interval=0.02)
    return text(path)


# -- as the kubelet translates an option -----------------------------------------------------

@pytest.mark.parametrize(("cpu", "millis", "cpu_max_line"), [
    ("0.5", 500, "50000 100000"),
    ("500m", 500, "50000 100000"),
    ("2", 2000, "200000 100000"),
    ("1.0", 1000, "100000 100000"),
    ("0.0005", 1, "1000 100000"),  # rounded up to 1m, and the quota is at least 1 ms
    ("1m", 1, "1000 100000"),
])
def test_cpu_limit_becomes_the_kubelets_cfs_quota(cpu: str, millis: int,
                                                   cpu_max_line: str) -> None:
    assert parse_cpu(cpu) == millis
    assert cpu_max(millis) == cpu_max_line


@pytest.mark.parametrize(("shares", "weight"), [(2, 1), (3, 2), (1024, 100), (262143, 10000),
                                                (262144, 10000)])
def test_shares_map_to_cgroup_v2_weight_as_opencontainers_does(shares: int, weight: int) -> None:
    assert shares_to_weight(shares) == weight


def test_one_cpu_gets_the_default_weight() -> None:
    assert cpu_weight(1000) == 100


@pytest.mark.parametrize("bad", ["", "lots", "-1", "0", "1Gi"])
def test_a_cpu_limit_kubernetes_would_refuse_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="cpu-limit"):
        parse_cpu(bad)


@pytest.mark.parametrize(("field", "value", "expected"), [
    ("tmp_size", "lots", "a memory quantity"),
    ("shm_size", 64, "a string"),
    ("max_file_size", "10 GB", "a memory quantity"),
    ("pids_limit", 0, "a positive number"),
    ("sandbox_binds", ["data"], "absolute paths"),
    ("sandbox_binds", ["/"], "absolute paths"),
    ("cgroup", "sys/fs/cgroup/x", "empty, none, or the absolute path"),
])
def test_a_bad_limit_setting_names_the_file_and_field(tmp_path: Path, field: str, value: Any,
                                                      expected: str) -> None:
    config = tmp_path / "hatchway.yaml"
    config.write_text(yaml.safe_dump({"local": {field: value}}))
    with pytest.raises(ConfigError) as err:
        load_settings([str(config)], environ={})
    assert (err.value.source, err.value.field) == (str(config), f"local.{field}")
    assert err.value.expected.startswith(expected)


# -- on the machine ----------------------------------------------------------------------------

@pytest.fixture
async def backends(tmp_path: Path) -> AsyncIterator[list[LocalBackend]]:
    made: list[LocalBackend] = []
    yield made
    for backend in made:
        await backend.close()


@root_only
async def test_without_a_cgroup_rlimits_bound_each_workspace(
        tmp_path: Path, backends: list[LocalBackend]) -> None:
    settings = LocalSettings(stop_grace_seconds=1.0, cgroup="none", pids_limit=64,
                             max_file_size="1Gi")
    backend = LocalBackend(RouteTable(), settings, proxy_prefix=PREFIX, state_dir=str(tmp_path))
    backends.append(backend)
    await backend.launch("alice", option(**{"memory-limit": "768Mi"}), None)
    seen = json.loads(await written(backend.workdir("alice") / "limits.json"))
    assert seen == {"RLIMIT_NPROC": 64, "RLIMIT_DATA": 768 * 2**20, "RLIMIT_FSIZE": 2**30}
    assert "RLIMIT_NPROC 64 per workspace uid" in backend.health()["limits"]


@pytest.fixture
def delegated(tmp_path: Path) -> Path:
    """A directory laid out as a delegated cgroup v2 (this machine has none to give): the
    backend's writes land in ordinary files the test reads back."""
    parent = tmp_path / "cgroup"
    parent.mkdir()
    (parent / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (parent / "cgroup.subtree_control").write_text("")
    (parent / "cgroup.procs").write_text("")
    return parent


@root_only
async def test_a_delegated_cgroup_holds_the_workspace_with_its_options_limits(
        tmp_path: Path, delegated: Path, backends: list[LocalBackend]) -> None:
    settings = LocalSettings(stop_grace_seconds=1.0, cgroup=str(delegated), pids_limit=64)
    backend = LocalBackend(RouteTable(), settings, proxy_prefix=PREFIX,
                           state_dir=str(tmp_path / "state"))
    backends.append(backend)
    await backend.launch("a.b", option(**{"memory-limit": "256Mi", "cpu-limit": "0.5"}), None)
    seen = json.loads(await written(backend.workdir("a.b") / "limits.json"))

    assert (delegated / "cgroup.subtree_control").read_text() == "+cpu +memory +pids"
    group = delegated / "workspace-a-2eb"
    assert {f: (group / f).read_text() for f in ("memory.max", "cpu.max", "cpu.weight",
                                                 "pids.max")} == {
        "memory.max": str(256 * 2**20), "cpu.max": "50000 100000", "cpu.weight": "59",
        "pids.max": "64"}
    # The workspace's first process put itself there before it became the workspace.
    pid = int(text(group / "cgroup.procs"))
    assert os.getpgid(pid) == pid and f"PPid:\t{os.getpid()}\n" in text(Path(f"/proc/{pid}/status"))
    # The cgroup bounds memory and processes; the rlimits for them are not set as well.
    assert seen["RLIMIT_NPROC"] != 64 and seen["RLIMIT_DATA"] != 256 * 2**20
    assert seen["RLIMIT_FSIZE"] == 10 * 2**30
    assert f"cgroup v2 under {delegated}" in backend.health()["limits"]


@root_only
def test_hatchway_moves_itself_out_of_the_cgroup_its_workspaces_go_under(
        delegated: Path) -> None:
    """A cgroup whose children have controllers may hold no process: a delegated cgroup that
    holds hatchway alone (systemd's Delegate=yes) is made usable by moving it into a leaf."""
    (delegated / "cgroup.type").write_text("domain\n")  # not the root cgroup
    (delegated / "cgroup.procs").write_text(f"{os.getpid()}\n")
    cgroups = Cgroups(str(delegated))
    assert cgroups.parent == delegated and cgroups.reason == ""
    assert (delegated / "gateway" / "cgroup.procs").read_text() == str(os.getpid())


@root_only
def test_a_cgroup_holding_other_processes_is_left_alone(delegated: Path) -> None:
    (delegated / "cgroup.type").write_text("domain\n")
    (delegated / "cgroup.procs").write_text(f"1\n{os.getpid()}\n")
    cgroups = Cgroups(str(delegated))
    assert cgroups.parent is None and "other than hatchway" in cgroups.reason
    assert (delegated / "cgroup.subtree_control").read_text() == ""
    assert not (delegated / "gateway").exists()


@root_only
def test_a_cgroup_without_memory_and_pids_is_not_used(delegated: Path) -> None:
    (delegated / "cgroup.controllers").write_text("cpu io\n")
    cgroups = Cgroups(str(delegated))
    assert cgroups.parent is None
    assert cgroups.reason == f"cgroup v2 at {delegated} does not delegate memory, pids " \
        "(it has: cpu io)"
