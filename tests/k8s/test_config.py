"""The ``kubernetes:`` settings: defaults, checked values, clear errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from launcher.errors import ConfigError
from launcher.kubernetes import KubernetesBackend
from launcher.kubernetes.config import parse_kube_settings
from launcher.options import HatcheryConfig, parse_hatchery_config
from launcher.routes import RouteTable
from proxy.settings import kube_settings, load_settings

from .conftest import HATCHERY_DOC


@pytest.fixture
def hatchery() -> HatcheryConfig:
    """The tests' hatchery.json (user namespace jupyter-pods); no cluster is reached here."""
    return parse_hatchery_config(HATCHERY_DOC, "test hatchery.json")


def test_defaults_are_hatcherys() -> None:
    cfg = kube_settings(load_settings([], environ={}))
    assert (cfg.route_to, cfg.grace_seconds, cfg.mapping_flavor, cfg.dropin_ambassador) == (
        "service", 20, "v1", False)


def test_mapping_flavor_defaults_to_envoy_mode_choice() -> None:
    settings = load_settings([], environ={}, overrides={"envoy": {"mapping_flavor": "v3alpha1"}})
    assert kube_settings(settings).mapping_flavor == "v3alpha1"


def test_kubernetes_mapping_flavor_wins_over_envoy_modes() -> None:
    settings = load_settings([], environ={}, overrides={
        "kubernetes": {"mapping_flavor": "v3alpha1"}, "envoy": {"mapping_flavor": "v1"}})
    assert kube_settings(settings).mapping_flavor == "v3alpha1"


@pytest.mark.parametrize(("raw", "key"), [
    ({"route_to": "pods"}, "kubernetes.route_to"),
    ({"request-timeout": "fast"}, "kubernetes.request-timeout"),
    ({"colour": "blue"}, "kubernetes.colour"),
    ({"mapping_flavor": "v9"}, "kubernetes.mapping_flavor"),
    ({"dropin_ambassador": "yes"}, "kubernetes.dropin_ambassador"),
])
def test_bad_values_name_the_key(raw: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        parse_kube_settings(raw)


def test_namespace_comes_from_hatchery_json_then_the_default(hatchery: HatcheryConfig) -> None:
    settings = load_settings([], environ={}, overrides={"backend": "kubernetes"})
    assert KubernetesBackend(RouteTable(), settings.kubernetes, hatchery).namespace == \
        "jupyter-pods"
    other = parse_kube_settings({"namespace": "other"})
    assert KubernetesBackend(RouteTable(), other, hatchery).namespace == "other"


async def test_unreadable_kubeconfig_is_a_config_error(hatchery: HatcheryConfig,
                                                       tmp_path: Path) -> None:
    settings = load_settings([], environ={}, overrides={
        "backend": "kubernetes", "kubernetes": {"kubeconfig": str(tmp_path / "missing")}})
    with pytest.raises(ConfigError, match="kubernetes.kubeconfig"):
        await KubernetesBackend(RouteTable(), settings.kubernetes, hatchery).start()
