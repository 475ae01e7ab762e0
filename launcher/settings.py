"""The launcher's sections of hatchway's settings tree: ``local:``, ``kubernetes:`` and
``paymodels:``. Each is a typed dataclass checked by :func:`launcher.settings_tree.build` (one
validator, one error shape); the backends receive these objects, never dicts. The root of the
tree (``proxy.settings.Settings``) holds them as typed sections.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .errors import ConfigError
from .processes import parse_memory
from .settings_tree import internal, non_negative, positive, setting


def _is_quantity(value: str) -> bool:
    try:
        parse_memory(value)
    except ValueError:
        return False
    return True


QUANTITY = (lambda v: v == "" or _is_quantity(v)), "a memory quantity like 512Mi or 1Gi, or empty"
ABSOLUTE = (lambda v: all(p.startswith("/") and p != "/" for p in v),
            "absolute paths other than /")
CGROUP = (lambda v: v in ("", "none") or v.startswith("/"),
          "empty, none, or the absolute path of a cgroup v2 directory")


@dataclass
class LocalSettings:
    """``local:``: workspaces as processes on this machine (the embedded default)."""

    stop_grace_seconds: float = setting(5.0, "SIGTERM → SIGKILL wait when a workspace stops.",
                                        check=positive())
    ready_timeout_seconds: float = setting(120.0, "How long a starting workspace may take to "
                                           "answer its readiness probe.", check=positive())
    probe_interval_seconds: float = setting(0.2, "How often a starting workspace is probed.",
                                            check=positive())
    log_dir: str = setting("", "Workspaces' log files; empty: <state_dir>/logs.")
    single_trust_domain: bool = setting(
        False, "Not root, workspaces cannot be kept apart (one uid for all): serve a second "
        "user only when the operator says every user may read every other's files and the "
        "gateway's key.")
    first_uid: int = setting(
        1_000_000_000, "Root: user N's workspaces run as uid/gid first_uid+N, above every range "
        "useradd and subuid hand out by default, so they match no account on the machine.",
        check=positive())
    pids_limit: int = setting(
        512, "Root: processes and threads one workspace may have at once (its cgroup's "
        "pids.max, else RLIMIT_NPROC of its uid): a fork bomb stops there.", check=positive())
    max_file_size: str = setting(
        "10Gi", "Root: the largest file a workspace may write (RLIMIT_FSIZE), a memory quantity; "
        "10Gi is Hatchery's default user volume. Empty: no limit. Total disk use is not "
        "limited.", check=QUANTITY)
    tmp_size: str = setting(
        "1Gi", "Sandbox: size of each workspace's private /tmp, a tmpfs (it is memory). Empty: "
        "the kernel's default, half the RAM.", check=QUANTITY)
    shm_size: str = setting(
        "64Mi", "Sandbox: size of each workspace's private /dev/shm (container runtimes' "
        "default). Empty: the kernel's default, half the RAM.", check=QUANTITY)
    sandbox_binds: list[str] = setting(
        factory=list, doc="Sandbox: more host paths each workspace sees read-only (a conda "
        "prefix its command runs from, shared reference data); nothing else outside /usr, the "
        "Python runtime and a few /etc files is visible.", check=ABSOLUTE)
    cgroup: str = setting(
        "", "Root: the cgroup v2 directory whose children hold workspaces (memory.max and "
        "cpu.max from each option's memory-limit and cpu-limit, pids.max from pids_limit); "
        "empty: hatchway's own cgroup when the host delegates memory and pids to it; none: "
        "rlimits only.", check=CGROUP)


DEFAULT_NAMESPACE = "jupyter-pods"


@dataclass(frozen=True)
class KubeSettings:
    """``kubernetes:``: workspaces as pods, Hatchery's way, routes fed by watches."""

    kubeconfig: str = setting("", "Path to a kubeconfig; empty: in-cluster (service account) "
                              "when running in a pod, else ~/.kube/config.")
    context: str = setting("", "kubeconfig context; empty: its current-context.")
    namespace: str = setting("", "User pods' namespace; empty: hatchery.json user-namespace, "
                             f"else {DEFAULT_NAMESPACE}.")
    route_to: Literal["service", "endpoints"] = setting(
        "service", "service: route to <svc>.<ns>.svc.<cluster_domain>:80; endpoints: straight "
        "to the ready pod address.")
    cluster_domain: str = setting("cluster.local", "The cluster's DNS domain.")
    request_timeout_seconds: float = setting(10.0, "One API call.", check=positive(),
                                             was="request_timeout")
    connect_timeout_seconds: float = setting(3.0, "Opening a connection to the API server.",
                                             was="connect_timeout",
                                     check=positive())
    retries: int = setting(2, "Extra attempts for a call that could not reach the server.",
                           check=non_negative())
    retry_backoff_seconds: float = setting(0.2, "Before the first retry; doubles each time.",
                                           was="retry_backoff",
                                   check=non_negative())
    relist_seconds: float = setting(300.0, "Full re-list of every watch, even when nothing "
                                    "went wrong.", check=positive())
    watch_seconds: int = setting(240, "Server-side timeout of one watch request.",
                                 check=positive())
    watch_stall_seconds: float = setting(15.0, "A watch silent this long past watch_seconds "
                                         "has stalled: cut it.", check=positive())
    backoff_max_seconds: float = setting(30.0, "Longest wait between failed list/watch "
                                         "attempts.", was="backoff_max",
                                 check=positive())
    dropin_ambassador: bool = setting(False, "Also route Services carrying Hatchery's "
                                      "getambassador.io/config annotation (Go Hatchery "
                                      "unchanged).")
    mapping_flavor: Literal["", "v1", "v3alpha1"] = setting(
        "", "Ambassador annotation written on hatchway's Services; empty: envoy.mapping_flavor.")
    grace_seconds: int = setting(20, "terminate: the pod's grace period (Hatchery's 20 s).",
                                 check=non_negative())
    user_volume_size: str = setting("", "PVC size when hatchery.json has no user-volume-size; "
                                    "empty: 10Gi.")
    gen3_endpoint: str = setting("", "GEN3_ENDPOINT given to workspace containers; empty: "
                                 "the top-level gen3_endpoint (Hatchery's variable).")
    fail_unschedulable: bool = setting(True, "Progress fails fast when the scheduler says "
                                       "Unschedulable and no autoscaler announced a scale-up.")
    fence_url: str = setting("", "Fence for the per-launch API keys; empty: Hatchery's rule "
                             "(http://fence-service/, or https://$GEN3_ENDPOINT/user/).")
    api_keys: bool = setting(True, "Mint a Fence API key per launch (API_KEY/API_KEY_ID in the "
                             "workspace and sidecar), as Hatchery does; the gen3 sidecar needs it.")
    default_idle_seconds: int = setting(
        3600, "Idle limit for options without their own (hatchery-reaper's global default); "
        "0: only options' shutdown_no_activity_timeout.", check=non_negative())
    activity_seconds: float = setting(
        30.0, "Each replica publishes users' activity (a Service annotation) at most this "
        "often: a restart loses at most this much.", check=positive())
    lease_name: str = setting("hatchway-culler", "The coordination.k8s.io Lease that elects "
                              "the one replica that culls.")
    lease_seconds: float = setting(15.0, "A leader that has not renewed this long is replaced.",
                                   check=positive())
    lease_renew_seconds: float = setting(5.0, "How often the leader renews (and the others "
                                         "try to take over); below lease_seconds.",
                                         check=positive())
    identity: str = setting("", "This replica's name in the Lease; empty: hostname-pid.")
    commons_endpoint: str | None = internal()  # the top-level gen3_endpoint (None: unset)

    def __post_init__(self) -> None:
        if self.lease_renew_seconds >= self.lease_seconds:
            raise ConfigError("settings", "kubernetes.lease_renew_seconds",
                              f"less than lease_seconds ({self.lease_seconds:g})",
                              self.lease_renew_seconds)


@dataclass
class PayModelSettings:
    """``paymodels:``: where the pay-model table is reached; the table is named in
    hatchery.json."""

    region: str = setting("us-east-1", "AWS region (Hatchery's, fixed in its code).")
    endpoint_url: str = setting("", "DynamoDB/STS endpoint override (a local emulator); "
                                "empty: AWS's.")
