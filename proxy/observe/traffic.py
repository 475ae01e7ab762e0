"""What the relay moved, for metrics: bytes each way and time to first byte, as plain ints.

The relay adds to these inline (an int add, and for each answer one ``monotonic_ns`` and a
bisect over 13 bounds); ``proxy.observe.metrics`` turns them into Prometheus families only when
Prometheus scrapes. prometheus-client's own Histogram takes a lock and walks its buckets on
every observation, several times this cost, which the fast path would pay on every request.
The aiohttp relay keeps one too, so both paths export the same family with a ``path`` label.
"""

from __future__ import annotations

from bisect import bisect_left

# seconds; Prometheus's ``le`` bounds (+Inf is implied)
TTFB_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BOUNDS_NS = tuple(round(b * 1e9) for b in TTFB_BUCKETS)


class Traffic:
    """Bytes to the browser (answers, heads and bodies as written; WebSocket frames) and to
    the workspace (request bodies as sent; WebSocket frames), and a time-to-first-byte
    histogram: ``ttfb_counts[i]`` answers took at most ``TTFB_BUCKETS[i]`` and more than the
    bound before (the last slot: more than the last bound)."""

    __slots__ = ("to_browser", "to_workspace", "ttfb_counts", "ttfb_sum_ns")

    def __init__(self) -> None:
        self.to_browser = 0
        self.to_workspace = 0
        self.ttfb_counts = [0] * (len(_BOUNDS_NS) + 1)
        self.ttfb_sum_ns = 0

    def first_byte(self, ns: int) -> None:
        """One answer's head arrived ``ns`` nanoseconds after its request was admitted."""
        self.ttfb_counts[bisect_left(_BOUNDS_NS, ns)] += 1
        self.ttfb_sum_ns += ns

    def cumulative(self) -> list[tuple[str, float]]:
        """The histogram as Prometheus buckets: (``le``, count at or below it)."""
        out: list[tuple[str, float]] = []
        total = 0
        for bound, n in zip((*map(str, TTFB_BUCKETS), "+Inf"), self.ttfb_counts, strict=True):
            total += n
            out.append((bound, float(total)))
        return out
