"""The one command, end to end on the cheapest peer."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.run import main


def test_quick_run_writes_table_json_and_machine_description(tmp_path: Path) -> None:
    assert main(["--quick", "--runs", "1", "--peers", "direct", "--scenarios", "a",
                 "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    rps = results["small_get"]["direct"]["rps"]
    assert rps["median"] > 0 and rps["samples"] == [rps["median"]]
    assert "| (a) small GET" in (tmp_path / "results.md").read_text()
    assert "cores:" in (tmp_path / "machine.md").read_text()
