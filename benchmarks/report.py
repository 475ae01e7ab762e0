"""Turns the runs into what people read: results.json (scenario → peer → metric → {median, min,
max, samples}), results.md (one table, each figure with its spread and its ratio to Envoy),
chart.png and machine.md."""

from __future__ import annotations

import json
import os
import platform
import statistics
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks.scenarios import Config, Scenario

REFERENCE = "envoy"


def summarize(samples: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples),
            "samples": samples}


def fmt(value: float) -> str:
    if value != value:  # NaN
        return "n/a"
    magnitude = abs(value)
    if magnitude >= 100_000:
        return f"{value / 1000:.0f}k"
    if magnitude >= 10_000:
        return f"{value / 1000:.1f}k"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}" if magnitude else "0"


def cell(entry: dict[str, Any], metric: str, reference: dict[str, Any] | None) -> str:
    if "skipped" in entry:
        return "skipped"
    if "failed" in entry:
        return "failed"
    fig = entry.get(metric)
    if fig is None:
        return "—"
    text = f"{fmt(fig['median'])} ({fmt(fig['min'])}–{fmt(fig['max'])})"
    ref = (reference or {}).get(metric)
    if metric not in ("errors", "held", "dropped") and ref and ref["median"]:
        text += f" ×{fig['median'] / ref['median']:.2f}"
    return text


def markdown(results: dict[str, Any], scenarios: list[Scenario], peers: list[str],
             notes: dict[str, str], header: str) -> str:
    out = [header, "", "| scenario | metric | " + " | ".join(peers) + " |",
           "|---|---|" + "---|" * len(peers)]
    problems: list[str] = []
    for sc in scenarios:
        by_peer = results.get(sc.key, {})
        if not by_peer:
            continue
        shown = [p for p in peers if p in by_peer]
        reference = by_peer.get(REFERENCE)
        reference = reference if reference and "skipped" not in reference else None
        for i, metric in enumerate(sc.metrics):
            arrow = "↑" if metric.higher_is_better else "↓"
            cells = [cell(by_peer[p], metric.key, reference) if p in shown else "—"
                     for p in peers]
            title = f"{sc.title} `{sc.key}`" if i == 0 else ""
            out.append(f"| {title} | {metric.label} {arrow} | " + " | ".join(cells) + " |")
        for peer in shown:
            why = by_peer[peer].get("skipped") or by_peer[peer].get("failed")
            if why:
                verb = "skipped" if "skipped" in by_peer[peer] else "failed"
                problems.append(f"- `{sc.key}` / **{peer}** {verb}: {why}")
        if sc.key in notes:
            problems.append(f"- `{sc.key}`: {notes[sc.key]}")
    out += ["", "Each cell: median (min–max) over the runs, then ×ratio to Envoy's median "
            "(↑: higher is better, so >1 beats Envoy; ↓: lower is better, so <1 beats Envoy).",
            ""]
    if problems:
        out += ["Notes, skipped and failed peers:", "", *problems, ""]
    return "\n".join(out)


def write_json(path: Path, results: dict[str, Any]) -> None:
    path.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")


def chart(path: Path, results: dict[str, Any], peers: list[str]) -> str | None:
    """The four headline figures as bars with min–max whiskers; None, or why there is none."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib not installed (pip install matplotlib): no chart"
    panels = [("small_get", "rps", "(a) small GET requests/s ↑"),
              ("small_get", "p99_ms", "(a) small GET p99 ms ↓"),
              ("ws_small", "msgs_s", "(d) WebSocket messages/s ↑"),
              ("download_100m", "mb_s", "(c) 100 MiB download MB/s ↑")]
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    for ax, (scenario, metric, title) in zip(axes.flat, panels, strict=True):
        ax.set_title(title, fontsize=10)
        names, meds, lo, hi = [], [], [], []
        for peer in peers:
            fig_ = results.get(scenario, {}).get(peer, {}).get(metric)
            names.append(peer)
            if fig_ is None:
                meds.append(0.0)
                lo.append(0.0)
                hi.append(0.0)
                continue
            meds.append(fig_["median"])
            lo.append(fig_["median"] - fig_["min"])
            hi.append(fig_["max"] - fig_["median"])
        colors = ["#d0d0d0" if n == "direct" else "#d62728" if n == "hatchway" else
                  "#1f77b4" if n == "envoy" else "#7f7f7f" for n in names]
        ax.bar(names, meds, yerr=[lo, hi], capsize=4, color=colors)
        if metric.endswith("_ms"):
            ax.set_yscale("log")  # one slow peer would flatten the others to nothing
        for x, value in enumerate(meds):
            ax.annotate(fmt(value) if value else "not run", (x, value or 1), ha="center",
                        va="bottom", fontsize=8, xytext=(0, 2), textcoords="offset points")
        ax.tick_params(axis="x", labelsize=9)
    fig.suptitle("hatchway benchmarks: median, whiskers min–max; direct = no proxy (the ceiling)",
                 fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine(versions: dict[str, str], cfg: Config, loads: dict[str, str], command: str,
            pinning: str) -> str:
    mem_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    except OSError:
        pass
    lines = [
        "# Machine and run", "",
        f"- command: `{command}`",
        f"- cores: {os.cpu_count()} ({cpu_model()})",
        f"- memory: {mem_kib / 1024 / 1024:.1f} GiB",
        f"- kernel: {platform.system()} {platform.release()}",
        f"- python: {platform.python_version()}",
        f"- CPU pinning: {pinning}",
        *(f"- load average {when}: {value}" for when, value in loads.items()),
        "", "## Versions", "",
        *(f"- {name}: {version}" for name, version in versions.items()),
        "", "## Parameters", "",
        *(f"- {k}: {v}" for k, v in asdict(cfg).items()),
        "", "Load generator, upstream and proxy share these cores; see benchmarks/README.md.",
        "",
    ]
    return "\n".join(lines)
