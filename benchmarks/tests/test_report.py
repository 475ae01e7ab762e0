"""How figures are summarised and shown."""

from __future__ import annotations

from benchmarks import report
from benchmarks.scenarios import SCENARIOS


def test_summary_is_median_min_max_and_the_samples() -> None:
    assert report.summarize([3.0, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0,
                                                 "samples": [3.0, 1.0, 2.0]}


def test_table_shows_ratio_to_envoy_and_why_a_peer_was_skipped() -> None:
    results = {"small_get": {
        "envoy": {"rps": report.summarize([10000.0, 10000.0])},
        "nginx": {"rps": report.summarize([15000.0, 15000.0])},
        "hatchway": {"skipped": "hatchway CLI not available"}}}
    text = report.markdown(results, [s for s in SCENARIOS if s.key == "small_get"],
                           ["hatchway", "envoy", "nginx"], {}, "# t")
    assert "15.0k (15.0k–15.0k) ×1.50" in text
    assert "**hatchway** skipped: hatchway CLI not available" in text
