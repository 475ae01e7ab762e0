"""What a workspace pod costs, priced as Hatchery's PodTracker prices it (costTracker.go
``calculatePodPrice``), so a commons' ``total-usage`` grows by the same amounts whichever of
the two runs.

The rule, with Go's arithmetic kept where it changes a digit: every container's and init
container's *requests* (never limits) count; CPU as ``MilliValue() / 1000`` cores (rounded up
to the millicore), memory as ``Value() / 1024³`` GiB (rounded up to the byte); each priced as
``amount × price × hours``, summed container by container, CPU and memory apart, then added.
Hours are Go's ``Duration.Hours()`` of *deletion − creation* (whole hours plus the rest
divided by 3.6e12 ns). A runtime of zero or less costs nothing. The table receives the total
as Go's ``%.4f`` prints it: that text is what ``UpdatePayModelCost`` adds. The prices are
hatchery.json's ``pricing`` (``Pricing{Cpu, Memory}``: dollars per requested core-hour and
GiB-hour; absent, every pod costs nothing).
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from launcher.gojson import quantity_amount
from launcher.hatchery_types import Pricing

_NS_PER_HOUR = 3_600_000_000_000
_GIB = 1024 * 1024 * 1024


@dataclass(frozen=True)
class PodCost:
    cpu: float = 0.0
    memory: float = 0.0

    @property
    def total(self) -> float:
        return self.cpu + self.memory

    @property
    def increment(self) -> str:
        """The amount as ``UpdatePayModelCost`` sends it: Go's ``fmt.Sprintf("%.4f", ...)``
        (both round the exact binary value to nearest, ties to even)."""
        return f"{self.total:.4f}"


def parse_time(text: str) -> datetime.datetime:
    """A Kubernetes timestamp (RFC 3339, ``Z``), as metav1.Time reads one."""
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def runtime_ns(created: datetime.datetime, ended: datetime.datetime) -> int:
    """Go's ``ended.Sub(created)`` in nanoseconds."""
    delta = ended - created
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def go_hours(ns: int) -> float:
    """Go's ``time.Duration.Hours``: whole hours plus the remainder as a fraction, each
    converted on its own (one division of the whole would round differently). ``ns`` > 0
    here, where Go's truncating division and Python's floor division agree."""
    hours, rest = divmod(ns, _NS_PER_HOUR)
    return float(hours) + float(rest) / (60 * 60 * 1e9)


def pod_cost(pod: Mapping[str, Any], ns: int, pricing: Pricing) -> PodCost:
    """``calculatePodPrice(pod, runtime)``. Raises GoDecodeError on a malformed quantity
    (the API server never stores one)."""
    if ns <= 0:
        return PodCost()
    hours = go_hours(ns)
    spec = pod.get("spec") or {}
    cpu = memory = 0.0
    for group in ("containers", "initContainers"):
        for i, container in enumerate(spec.get(group) or []):
            requests = (container.get("resources") or {}).get("requests") or {}
            where = f"spec.{group}[{i}].resources.requests"
            milli = math.ceil(quantity_amount(requests.get("cpu"), f"{where}.cpu") * 1000)
            cpu += float(milli) / 1000.0 * pricing.cpu * hours
            size = math.ceil(quantity_amount(requests.get("memory"), f"{where}.memory"))
            memory += float(size) / _GIB * pricing.memory * hours
    return PodCost(cpu=cpu, memory=memory)
