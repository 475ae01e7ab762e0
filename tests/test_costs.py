"""Pricing a pod as Hatchery's PodTracker does (costTracker.go ``calculatePodPrice``) at
hatchery.json's ``pricing``, and what the start-up warning says about cost tracking per backend. The
amounts Hatchery adds for whole pod lifetimes are checked against a golden in
tests/k8s/costs/test_golden.py."""

from __future__ import annotations

from typing import Any

import pytest

from launcher.costs.notes import unsupported
from launcher.costs.pricing import Pricing, pod_cost
from launcher.options import parse_hatchery_config

HOUR = 3_600_000_000_000


def pod(*containers: dict[str, Any], init: tuple[dict[str, Any], ...] = ()) -> dict[str, Any]:
    return {"spec": {"containers": list(containers), "initContainers": list(init)}}


def requests(cpu: str, memory: str, **extra: Any) -> dict[str, Any]:
    return {"resources": {"requests": {"cpu": cpu, "memory": memory}, **extra}}


def test_hatcherys_own_example_costs_what_its_test_expects() -> None:
    """costTracker_test.go TestPodTracker_CalculatePodPrice: 1 + 0.5 cores, 2 + 1 GiB,
    $0.10 and $0.05 an hour, 2 hours."""
    cost = pod_cost(pod(requests("1", "2Gi"), requests("500m", "1Gi")), 2 * HOUR,
                    Pricing(cpu=0.10, memory=0.05))
    assert (round(cost.cpu, 9), round(cost.memory, 9), cost.increment) == (0.3, 0.3, "0.6000")


def test_requests_count_not_limits_and_init_containers_count_too() -> None:
    priced = pod(requests("1", "0", limits={"cpu": "8", "memory": "64Gi"}),
                 init=(requests("250m", "0"),))
    assert pod_cost(priced, HOUR, Pricing(cpu=1.0)).increment == "1.2500"


def test_a_container_without_requests_costs_nothing() -> None:
    assert pod_cost(pod({"name": "bare"}), HOUR, Pricing(cpu=1.0, memory=1.0)).total == 0


@pytest.mark.parametrize("ns", [0, -HOUR])
def test_a_runtime_of_zero_or_less_costs_nothing(ns: int) -> None:
    cost = pod_cost(pod(requests("1", "1Gi")), ns, Pricing(cpu=1.0, memory=1.0))
    assert cost.increment == "0.0000"


def test_cpu_rounds_up_to_the_millicore_and_memory_to_the_byte() -> None:
    """MilliValue() and Value() round up: 0.0001 cores is 1 millicore, 0.5 bytes is one."""
    assert pod_cost(pod(requests("0.0001", "0")), HOUR, Pricing(cpu=1000.0)).total == 1.0
    assert pod_cost(pod(requests("0", "0.5")), HOUR,
                    Pricing(memory=float(1 << 30))).total == 1.0


def test_pricing_is_read_from_hatchery_json_ignoring_case_as_gos_json_does() -> None:
    config = parse_hatchery_config({"pricing": {"CPU": 0.5, "Memory": 2}}, "h")
    assert (config.pricing.cpu, config.pricing.memory) == (0.5, 2.0)
    assert parse_hatchery_config({}, "h").pricing == Pricing()


def test_the_warning_says_the_local_backend_charges_nothing() -> None:
    with_table = parse_hatchery_config({"pay-models-dynamodb-table": "pm"}, "h")
    notes = unsupported(with_table, "local")
    assert len(notes) == 1 and "local backend charges nothing" in notes[0]
    assert unsupported(with_table, "kubernetes") == []


def test_the_warning_names_the_cost_endpoints_not_served() -> None:
    [note] = unsupported(parse_hatchery_config({"pricing": {"cpu": 0.1}}, "h"), "kubernetes")
    assert "/allCosts" in note and "/timetracker" in note
