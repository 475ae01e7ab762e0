"""What a commons using Hatchery's cost tracking keys would miss here, for the start-up
warning: the local backend charges nothing, and Hatchery's cost endpoints are not served."""

from __future__ import annotations

from typing import TYPE_CHECKING

from launcher.hatchery_types import Pricing

if TYPE_CHECKING:
    from launcher.options import HatcheryConfig


def unsupported(config: HatcheryConfig, backend: str) -> list[str]:
    notes = []
    if config.pay_models_dynamodb_table and backend != "kubernetes":
        notes.append("cost tracking: the local backend charges nothing to the pay-model table "
                     "(total-usage does not grow, so hard-limit never takes effect; the "
                     "kubernetes backend charges as Hatchery's PodTracker does)")
    if config.pricing != Pricing():
        notes.append("pricing: /allCosts and /timetracker are not served (costs are charged "
                     "to total-usage, on the kubernetes backend with a pay-model table)")
    return notes
