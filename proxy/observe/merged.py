"""One Prometheus scrape for every worker of ``hatchway serve --workers N``.

Each worker keeps its metrics as one process does (``observe.metrics``: the fast path's plain
ints and ``Traffic`` read at scrape time, prometheus-client metrics on the aiohttp path) and
serves them on a Unix socket of its own; the parent scrapes every worker when Prometheus
scrapes it and adds them up here. prometheus-client's multiprocess mode was the other way, but
it cannot export custom collectors (the fast path's counters, the route table, the watches are
all read by one), and would put an mmap write under a lock behind every increment.

How families combine:

* counters and histograms (and summaries, untyped) are summed, bucket by bucket; their
  ``_created`` series take the earliest;
* a gauge by its entry in ``GAUGE_MODES``: ``sum`` (open connections), ``max`` (the route
  table every worker holds alike, draining), ``min`` (a watch is up only if it is up in every
  worker); a gauge not named there keeps one series per worker (label ``worker``), as
  multiprocess mode's default ``all`` does;
* a worker that does not answer a scrape counts with what it last answered, so a sum never
  goes down (Prometheus would read a dip as a counter reset and count everything again);
* a worker that exits leaves its counters and histograms behind as last scraped ("retired"):
  the sums keep them, its successor starts from zero beside them, nothing is counted twice.
  What it counted after the last scrape is lost (a SIGKILL leaves no chance to say); its
  gauges go with it (multiprocess mode's ``livesum``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families

CUMULATIVE = frozenset({"counter", "histogram", "summary", "unknown", "untyped"})
# every gauge the gateway exports (tests/test_workers.py keeps this list complete)
GAUGE_MODES: dict[str, str] = {
    "hatchway_routes": "max",
    "hatchway_draining": "max",
    "hatchway_aiohttp_websockets_open": "sum",
    "hatchway_fastpath_websockets_open": "sum",
    "hatchway_fastpath_connections": "sum",
    "hatchway_watch_up": "min",
    "hatchway_watch_last_event_age_seconds": "max",
}
WORKER_LABEL = "worker"
SampleKey = tuple[str, tuple[tuple[str, str], ...]]  # (sample name, sorted labels)


@dataclass
class Family:
    """One metric family as a worker exported it: samples by name and labels."""

    name: str
    type: str
    documentation: str
    samples: dict[SampleKey, float] = field(default_factory=dict)

    @property
    def mode(self) -> str:
        """How this family's samples combine across workers."""
        if self.type in CUMULATIVE:
            return "sum"
        if self.name.endswith("_created"):
            return "min"
        return GAUGE_MODES.get(self.name, "all")


Snapshot = dict[str, Family]


def parse(text: str) -> Snapshot:
    """A worker's text exposition as families (prometheus-client's own parser)."""
    families: Snapshot = {}
    for metric in text_string_to_metric_families(text):
        fam = families[metric.name] = Family(metric.name, metric.type, metric.documentation)
        for s in metric.samples:
            fam.samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return families


def _combine(mode: str, old: float | None, new: float) -> float:
    if old is None:
        return new
    if mode == "max":
        return max(old, new)
    if mode == "min":
        return min(old, new)
    return old + new


def _cumulative(fam: Family) -> bool:
    return fam.type in CUMULATIVE or fam.name.endswith("_created")


def _fold(into: Snapshot, worker: str | None, snapshot: Snapshot,
          only_cumulative: bool = False) -> None:
    """Add ``snapshot``'s families into ``into`` by their modes; ``worker`` labels the
    families that keep one series per worker."""
    for name, fam in snapshot.items():
        if only_cumulative and not _cumulative(fam):
            continue
        mode = fam.mode
        out = into.get(name)
        if out is None:
            out = into[name] = Family(name, fam.type, fam.documentation)
        for (sample, labels), value in fam.samples.items():
            if mode == "all":
                labels = tuple(sorted((*labels, (WORKER_LABEL, worker or ""))))
            key = (sample, labels)
            out.samples[key] = _combine(mode, out.samples.get(key), value)


class Scrapes:
    """What each worker last answered, and what the workers that have exited left behind."""

    def __init__(self) -> None:
        self.live: dict[int, Snapshot] = {}
        self.retired: Snapshot = {}

    def seen(self, worker: int, text: str) -> None:
        self.live[worker] = parse(text)

    def retire(self, worker: int) -> None:
        """Worker ``worker`` has exited: keep its counters and histograms, drop its gauges."""
        snapshot = self.live.pop(worker, None)
        if snapshot is not None:
            _fold(self.retired, None, snapshot, only_cumulative=True)

    def merged(self) -> Snapshot:
        out: Snapshot = {}
        _fold(out, None, self.retired)
        for worker, snapshot in sorted(self.live.items()):
            _fold(out, str(worker), snapshot)
        return out

    def collect(self) -> Iterator[Metric]:
        """The merged families, for ``generate_latest`` (a collector's ``collect``)."""
        yield from as_metrics(self.merged().values())


def as_metrics(families: Iterable[Family]) -> Iterator[Metric]:
    for fam in families:
        metric = Metric(fam.name, fam.documentation, fam.type)
        for (sample, labels), value in fam.samples.items():
            metric.add_sample(sample, dict(labels), value)
        yield metric
