"""deploy/monitoring/: the ServiceMonitor scrapes the port the Deployment and config expose,
and every metric name the PrometheusRule and the Grafana dashboard query is one a live
gateway (Kubernetes backend, watches included) exports on its metrics listener. The drain's
timings fit the pod's termination grace period."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from prometheus_client.parser import text_string_to_metric_families

from proxy.serve.app import build_app
from proxy.serve.server import start
from proxy.settings import load_settings

from ..helpers import DEPLOY, of_kind
from .cluster import Cluster
from .conftest import eventually

MONITORING = DEPLOY / "monitoring"
METRIC = re.compile(r"\bhatchway_[a-z_]+\b")
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum",
                                                              "_created"),
            "gauge": ("",), "summary": ("_count", "_sum")}


def _doc(kind: str) -> dict[str, Any]:
    (doc,) = of_kind(kind, MONITORING / "install.yaml")
    return doc


def _base_settings(tmp_path: Path) -> Any:
    """The kustomize base's hatchway.yaml (deploy/install.yaml), as the pod reads it."""
    (config,) = [c for c in of_kind("ConfigMap") if c["metadata"]["name"] == "hatchway-config"]
    path = tmp_path / "hatchway.yaml"
    path.write_text(config["data"]["hatchway.yaml"])
    return load_settings([str(path)], environ={})


def queried_names() -> set[str]:
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    rule = _doc("PrometheusRule")
    exprs += [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]]
    return {name for expr in exprs for name in METRIC.findall(expr)}


async def exported_names(tmp_path: Path, cluster: Cluster) -> set[str]:
    settings = load_settings([], environ={}, overrides={
        "state_dir": str(tmp_path / "state"), "backend": "kubernetes", "metrics_port": 0,
        "kubernetes": {"kubeconfig": cluster.kubeconfig, "namespace": cluster.namespace,
                       "request_timeout": 2, "retries": 1, "retry_backoff": 0.05}})
    running = await start(build_app(settings), "127.0.0.1", 0)
    try:
        url = f"http://127.0.0.1:{running.metrics_port}/metrics"
        async with aiohttp.ClientSession() as http:
            async def scrape() -> str | None:
                async with http.get(url) as resp:
                    text = await resp.text()
                return text if "hatchway_watch_up" in text else None

            text = await eventually(scrape)
    finally:
        await running.close()
    names = set()
    for family in text_string_to_metric_families(text):
        names |= {family.name + s for s in SUFFIXES.get(family.type, ("",))}
    return names


async def test_every_queried_metric_is_exported(cluster: Cluster, tmp_path: Path) -> None:
    queried = queried_names()
    assert len(queried) >= 15  # the dashboard covers the families, not one or two
    missing = queried - await exported_names(tmp_path, cluster)
    assert not missing, f"queried but never exported: {sorted(missing)}"


def test_the_service_monitor_scrapes_the_metrics_port(tmp_path: Path) -> None:
    monitor = _doc("ServiceMonitor")
    (endpoint,) = monitor["spec"]["endpoints"]
    metrics_service = next(s for s in of_kind("Service")
                           if s["metadata"]["name"] == "hatchway-metrics")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= \
        metrics_service["metadata"]["labels"].items()
    assert endpoint["port"] in [p["name"] for p in metrics_service["spec"]["ports"]]
    config = _base_settings(tmp_path)
    (deployment,) = of_kind("Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["metrics"] == config.metrics_port
    assert config.metrics_host == "0.0.0.0"


def test_the_drain_finishes_within_the_termination_grace_period(tmp_path: Path) -> None:
    config = _base_settings(tmp_path)
    (deployment,) = of_kind("Deployment")
    spec = deployment["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pre_stop + config.drain.timeout_seconds < spec["terminationGracePeriodSeconds"]
    assert config.drain.delay_seconds is not None
    assert config.drain.websocket_grace_seconds < config.drain.timeout_seconds


def test_the_rules_and_dashboard_are_well_formed() -> None:
    rule = _doc("PrometheusRule")
    alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]}
    assert alerts == {"HatchwayLaunchFailures", "HatchwayWatchStale", "HatchwayGateway5xxRate"}
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    kustomization = yaml.safe_load((MONITORING / "kustomization.yaml").read_text())
    for resource in kustomization["resources"]:
        assert (MONITORING / resource).is_file()
