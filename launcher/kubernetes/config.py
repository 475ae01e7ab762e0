"""The ``kubernetes:`` section of hatchway's settings, read into typed values once.

Every key is optional::

    kubernetes:
      kubeconfig: ""            # path; "" = in-cluster (service account) when running in a
                                #   pod, else ~/.kube/config
      context: ""               # kubeconfig context; "" = its current-context
      namespace: ""             # user pods' namespace; "" = hatchery.json user-namespace,
                                #   else "jupyter-pods"
      route_to: service         # service: route to <svc>.<ns>.svc.<cluster_domain>:80
                                # endpoints: route straight to the ready pod address
      cluster_domain: cluster.local
      request_timeout: 10       # seconds for one API call
      connect_timeout: 3        # seconds to open a connection to the API server
      retries: 2                # extra attempts for a call that could not reach the server
      retry_backoff: 0.2        # seconds before the first retry; doubles each time
      relist_seconds: 300       # full re-list of every watch, even when nothing went wrong
      watch_seconds: 240        # server-side timeout of one watch request
      watch_stall_seconds: 15   # a watch silent this long past watch_seconds has stalled: cut it
      backoff_max: 30           # longest wait between failed list/watch attempts
      dropin_ambassador: false  # also route Services carrying Hatchery's
                                #   getambassador.io/config annotation (Go Hatchery unchanged)
      mapping_flavor: ""        # annotation written on hatchway's Services: v1 | v3alpha1;
                                #   "" = envoy.mapping_flavor, else v1
      grace_seconds: 20         # terminate: the pod's grace period (Hatchery's 20 s)
      user_volume_size: ""      # PVC size when hatchery.json has no user-volume-size; "10Gi"
      gen3_endpoint: ""         # GEN3_ENDPOINT given to workspace containers, as Hatchery does
      fail_unschedulable: true  # progress fails fast when the scheduler says Unschedulable and
                                #   no autoscaler has announced a scale-up
      fence_url: ""             # Fence for per-launch API keys; "" = http://fence-service/, or
                                #   https://$GEN3_ENDPOINT/user/ (Hatchery's getFenceURL)
      api_keys: true            # mint API_KEY/API_KEY_ID for each workspace, as Hatchery does
      default_idle_seconds: 3600  # idle limit for options without their own (hatchery-reaper)
      activity_seconds: 30      # each replica publishes users' activity this often at most
      lease_name: hatchway-culler   # the Lease that elects the one replica that culls
      lease_seconds: 15         # a leader not renewing this long is replaced
      lease_renew_seconds: 5
      identity: ""              # holder name in the Lease; "" = hostname-pid

A wrong key or value stops start-up with a ConfigError naming ``kubernetes.<key>``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from launcher.errors import ConfigError

DEFAULT_NAMESPACE = "jupyter-pods"
ROUTE_TO = ("service", "endpoints")
FLAVORS = ("v1", "v3alpha1")


@dataclass(frozen=True)
class KubeSettings:
    kubeconfig: str = ""
    context: str = ""
    namespace: str = ""
    route_to: str = "service"
    cluster_domain: str = "cluster.local"
    request_timeout: float = 10.0
    connect_timeout: float = 3.0
    retries: int = 2
    retry_backoff: float = 0.2
    relist_seconds: float = 300.0
    watch_seconds: int = 240
    watch_stall_seconds: float = 15.0
    backoff_max: float = 30.0
    dropin_ambassador: bool = False
    mapping_flavor: str = ""
    grace_seconds: int = 20
    user_volume_size: str = ""
    gen3_endpoint: str = ""
    fail_unschedulable: bool = True
    # -- issue 11: API keys, shared activity, one culler (launcher/fence_keys.py, leader.py) --
    fence_url: str = ""  # Fence for API keys; "" = Hatchery's rule (fence-service or GEN3_ENDPOINT)
    api_keys: bool = True  # mint a Fence API key per launch (API_KEY/API_KEY_ID), as Hatchery
    default_idle_seconds: int = 3600  # hatchery-reaper's global idle limit; 0 = options' only
    activity_seconds: float = 30.0  # publish each user's activity at most this often (annotation)
    lease_name: str = "hatchway-culler"  # coordination.k8s.io Lease electing the one culler
    lease_seconds: float = 15.0  # a leader silent this long is replaced
    lease_renew_seconds: float = 5.0  # how often the leader renews (and others try to take it)
    identity: str = ""  # this replica's name in the Lease; "" = hostname (the pod name) + pid


def _expect(key: str, value: Any, kind: type) -> Any:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        name = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}
        raise ConfigError("settings", f"kubernetes.{key}", name[kind], value)
    return value


def parse_kube_settings(raw: Mapping[str, Any], envoy: Mapping[str, Any] | None = None
                        ) -> KubeSettings:
    """Check ``settings.kubernetes`` key by key; ``envoy`` supplies the default flavor."""
    fields = {f.name: f for f in dataclasses.fields(KubeSettings)}
    values: dict[str, Any] = {}
    for key, value in (raw or {}).items():
        name = key.replace("-", "_")
        if name not in fields:
            raise ConfigError("settings", f"kubernetes.{key}", "one of " + ", ".join(fields),
                              "an unknown key")
        kind = type(fields[name].default)
        values[name] = _expect(key, value, kind)
    if not values.get("mapping_flavor"):
        values["mapping_flavor"] = str((envoy or {}).get("mapping_flavor") or "v1")
    cfg = KubeSettings(**values)
    if cfg.route_to not in ROUTE_TO:
        raise ConfigError("settings", "kubernetes.route_to", " or ".join(ROUTE_TO), cfg.route_to)
    if cfg.mapping_flavor not in FLAVORS:
        raise ConfigError("settings", "kubernetes.mapping_flavor", " or ".join(FLAVORS),
                          cfg.mapping_flavor)
    for key in ("request_timeout", "connect_timeout", "relist_seconds", "backoff_max",
                "watch_stall_seconds"):
        if getattr(cfg, key) <= 0:
            raise ConfigError("settings", f"kubernetes.{key}", "a positive number",
                              getattr(cfg, key))
    if not 0 < cfg.lease_renew_seconds < cfg.lease_seconds or cfg.activity_seconds <= 0:
        raise ConfigError("settings", "kubernetes", "0 < lease_renew_seconds < lease_seconds "
                          "and activity_seconds > 0", (cfg.lease_renew_seconds,
                                                       cfg.lease_seconds, cfg.activity_seconds))
    if cfg.watch_seconds <= 0 or cfg.retries < 0 or cfg.grace_seconds < 0:
        raise ConfigError("settings", "kubernetes", "watch_seconds > 0, retries >= 0 and "
                          "grace_seconds >= 0", (cfg.watch_seconds, cfg.retries,
                                                 cfg.grace_seconds))
    return cfg
