"""The Envoy config hatchway writes: valid for Envoy 1.40 (checked by Envoy itself), written
atomically, once per burst of changes, and only when it changed."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from launcher.errors import ConfigError
from launcher.routes import Route, RouteTable
from proxy.envoy.config import (
    CDS_FILE,
    LDS_FILE,
    RDS_FILE,
    EnvoyConfigWriter,
    bootstrap_for_settings,
    cluster_name,
    envoy_settings,
    write_bootstrap,
)
from proxy.settings import load_settings

from ..helpers import eventually
from .conftest import EXT_AUTHZ_PREFIX, routes_in, validate_config

MIXED_ROUTES = {
    "alice": Route("127.0.0.1", 8888, "/lw-workspace/proxy/"),
    "bob@example.org": Route("h-bob-40example-2eorg-s.jupyter-pods.svc.cluster.local", 80, "/"),
    "carol": Route("10.0.0.7", 443, "/", tls=True),
    "dave": Route("10.0.0.8", 8888, "/", ready=False),
    "true": Route("::1", 8888, "/"),
}


def bootstrap_in(tmp_path: Path, **overrides: Any) -> Path:
    path = tmp_path / "bootstrap.yaml"
    args: dict[str, Any] = dict(listen_port=18000, admin_port=19901,
                                dynamic_dir=tmp_path / "dynamic", ext_authz_host="hatchway",
                                ext_authz_port=8080, ext_authz_path_prefix=EXT_AUTHZ_PREFIX)
    write_bootstrap(path, **{**args, **overrides})
    return path


def inlined(bootstrap: Path, dynamic: Path) -> Path:
    """The same config with the three files' resources inlined as static ones: Envoy's validate
    mode does not read file-based dynamic resources, so this is how Envoy checks them."""
    doc = yaml.safe_load(bootstrap.read_text())
    listeners = yaml.safe_load((dynamic / LDS_FILE).read_text())["resources"]
    [route_config] = json.loads((dynamic / RDS_FILE).read_text())["resources"]
    clusters = json.loads((dynamic / CDS_FILE).read_text())["resources"]
    route_config.pop("@type")
    for listener in listeners:
        listener.pop("@type")
        hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
        del hcm["rds"]
        hcm["route_config"] = route_config
    for cluster in clusters:
        cluster.pop("@type")
    del doc["dynamic_resources"]
    doc["static_resources"]["listeners"] = listeners
    doc["static_resources"]["clusters"] += clusters
    out = bootstrap.with_name("inlined.json")  # JSON: no YAML re-reading of any string
    out.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    return out


def test_bootstrap_validates(tmp_path: Path) -> None:
    result = validate_config(bootstrap_in(tmp_path))
    assert result.returncode == 0, result.stderr


def test_validation_catches_a_broken_file(tmp_path: Path) -> None:
    """The check below means something: Envoy refuses a broken route deep inside the route
    table's lookup (an invalid regular expression in a route of a route list)."""
    path = bootstrap_in(tmp_path)
    rds = tmp_path / "dynamic" / RDS_FILE
    text = rds.read_text()
    assert "application/json.*" in text
    rds.write_text(text.replace("application/json.*", "application/json.*(("))
    result = validate_config(inlined(path, tmp_path / "dynamic"))
    assert result.returncode != 0
    assert "application/json" in result.stderr + result.stdout


def test_listener_routes_and_clusters_validate_with_every_kind_of_route(tmp_path: Path) -> None:
    path = bootstrap_in(tmp_path)
    routes = RouteTable()
    for user, route in MIXED_ROUTES.items():
        routes.set(user, route)
    EnvoyConfigWriter(routes, tmp_path / "dynamic").write()
    result = validate_config(inlined(path, tmp_path / "dynamic"))
    assert result.returncode == 0, result.stderr + result.stdout


def test_every_cluster_a_route_names_is_written(tmp_path: Path) -> None:
    """Envoy's validation does not follow routes into the route table's lookup, so this does:
    no route names a cluster Envoy would not have."""
    routes = RouteTable()
    for user, route in MIXED_ROUTES.items():
        routes.set(user, route)
    EnvoyConfigWriter(routes, tmp_path, jwt_lane=lambda user: True).write()
    [route_config] = json.loads((tmp_path / RDS_FILE).read_text())["resources"]
    clusters = {c["name"] for c in json.loads((tmp_path / CDS_FILE).read_text())["resources"]}
    named = {r["route"]["cluster"] for r in routes_in(route_config) if "route" in r}
    assert named - {"hatchway"} and named - {"hatchway"} <= clusters


def test_users_routes_are_looked_up_by_exact_name_not_tried_in_order(tmp_path: Path) -> None:
    """The virtual host has no ordered route list that grows with the users: a user's routes
    sit in a hash table under their exact name (the verified claim's, and the user
    header's), so Envoy's cost per request does not depend on how many users there are."""
    routes = RouteTable()
    for i in range(100):
        routes.set(f"user{i}", Route("127.0.0.1", 9000 + i, "/"))
    writer = EnvoyConfigWriter(routes, tmp_path, jwt_lane=lambda user: True)
    [vhost] = writer.route_configuration(routes.items())["virtual_hosts"]
    assert "routes" not in vhost
    tables = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "exact_match_map" in node:
                tables.append((node["input"]["name"], set(node["exact_match_map"]["map"])))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
    walk(vhost["matcher"])
    users = {f"user{i}" for i in range(100)}
    assert sorted(tables) == [("remote_user", users), ("x-hatchway-verified-purpose", {"access"}),
                              ("x-hatchway-verified-user", users)]


def test_envoy_config_command_output_validates(tmp_path: Path) -> None:
    settings = load_settings([], environ={}, overrides={
        "mode": "envoy", "state_dir": str(tmp_path / "state"), "host": "0.0.0.0",
        "envoy": {"listen_port": 8000, "admin_port": 9901}})
    path = tmp_path / "bootstrap.yaml"
    path.write_text(bootstrap_for_settings(settings))
    dynamic = tmp_path / "state" / "envoy"
    assert {p.name for p in dynamic.iterdir()} == {LDS_FILE, RDS_FILE, CDS_FILE}
    result = validate_config(inlined(path, dynamic))
    assert result.returncode == 0, result.stderr + result.stdout


def test_operator_example_settings_are_valid() -> None:
    example = Path(__file__).parents[2] / "deploy" / "envoy" / "hatchway-envoy.yaml"
    settings = load_settings([str(example)], environ={})
    env = envoy_settings(settings)
    assert settings.mode == "envoy"
    assert (env.listen_port, env.hatchway_port) == (8000, settings.port)


def test_hatchway_listening_on_all_addresses_is_reached_on_loopback(tmp_path: Path) -> None:
    settings = load_settings([], environ={}, overrides={
        "state_dir": str(tmp_path), "host": "0.0.0.0", "port": 8123})
    env = envoy_settings(settings)
    assert (env.hatchway_host, env.hatchway_port) == ("127.0.0.1", 8123)


@pytest.mark.parametrize(("envoy", "field"), [
    ({"listen-port": "8000"}, "envoy.listen-port"),
    ({"idle_timeout_s": True}, "envoy.idle_timeout_s"),
    ({"mapping_flavor": "v2"}, "envoy.mapping_flavor"),
    ({"admin_port": 70000}, "envoy.admin_port"),
    ({"listen_prot": 8000}, "envoy.listen_prot"),
])
def test_bad_envoy_settings_name_the_field(tmp_path: Path, envoy: dict[str, Any],
                                           field: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings([], environ={}, overrides={"state_dir": str(tmp_path), "envoy": envoy})
    assert err.value.field == field


def test_unwritable_dynamic_dir_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    settings = load_settings([], environ={}, overrides={
        "state_dir": str(tmp_path), "envoy": {"dynamic_dir": str(blocker / "envoy")}})
    with pytest.raises(ConfigError) as err:
        bootstrap_for_settings(settings)
    assert err.value.field == "envoy.dynamic_dir"


def test_cluster_names_differ_where_hatchery_escaping_collides() -> None:
    assert cluster_name("\u0100" + "0") != cluster_name("\u1000")


def test_unchanged_table_rewrites_nothing(tmp_path: Path) -> None:
    routes = RouteTable()
    routes.set("alice", MIXED_ROUTES["alice"])
    writer = EnvoyConfigWriter(routes, tmp_path)
    writer.write()
    written = writer.writes
    writer.write()
    assert writer.writes == written


def test_change_replaces_the_file_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    routes = RouteTable()
    writer = EnvoyConfigWriter(routes, tmp_path)
    writer.write()
    before = (tmp_path / RDS_FILE).stat().st_ino
    routes.set("alice", MIXED_ROUTES["alice"])
    writer.write()
    assert (tmp_path / RDS_FILE).stat().st_ino != before  # a new file renamed over the old
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([CDS_FILE, RDS_FILE])


async def test_burst_of_changes_is_written_once(tmp_path: Path) -> None:
    routes = RouteTable()
    writer = EnvoyConfigWriter(routes, tmp_path, debounce_s=0.1)
    await writer.start()
    try:
        written = writer.writes
        for i in range(200):
            routes.set(f"user{i}", Route("127.0.0.1", 9000 + i, "/"))
        # wait for the write (a loaded machine may take a while), then a little longer to see
        # that no second write follows
        await eventually(lambda: writer.writes - written >= 2, within=10)
        await asyncio.sleep(0.3)
        assert writer.writes - written == 2  # one cds.json, one rds.json
        rds = json.loads((tmp_path / RDS_FILE).read_text())
        routes_written = routes_in(rds["resources"][0])
        assert sum(r["name"].startswith("user_") for r in routes_written) == 200
    finally:
        await writer.stop()


async def test_stopped_writer_no_longer_follows_the_table(tmp_path: Path) -> None:
    routes = RouteTable()
    writer = EnvoyConfigWriter(routes, tmp_path, debounce_s=0.01)
    await writer.start()
    await writer.stop()
    text = (tmp_path / RDS_FILE).read_text()
    routes.set("alice", MIXED_ROUTES["alice"])
    await asyncio.sleep(0.1)
    assert (tmp_path / RDS_FILE).read_text() == text
