"""The Kubernetes backend: workspaces as the pods, Services and volumes Hatchery makes, with a
route table every replica builds from watches. Settings: see ``config`` (``kubernetes:``).

Modules, one job each: ``config`` (settings), ``client`` (API access, timeouts, retries),
``specs`` (object builders), ``pods`` (ready? failed, why?), ``status`` (Hatchery's status),
``progress`` (launch progress messages), ``watching`` (list-then-watch reflectors),
``routing`` (Services → routes, incl. Ambassador drop-in), ``cost_tracking`` (Hatchery's
PodTracker: pods charged to pay models), ``backend`` (KubernetesBackend).
"""

from .backend import KubernetesBackend

__all__ = ["KubernetesBackend"]
