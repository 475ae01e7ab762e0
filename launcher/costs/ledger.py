"""The pay-model table's usage writes: the three Hatchery's PodTracker makes (costTracker.go
``ensureUserInPayModelTable``, ``createDefaultTrialPayPayModel``, ``UpdatePayModelCost``), each
made safe to repeat, so a retry, a restart or a second replica never counts a pod twice.

Where hatchway writes differently, and why (each also in the README's compatibility table):

* a charge carries the pod's uid and is refused (a conditional update) when the row's last
  charge was that same pod: repeating a charge whose answer was lost adds nothing;
* a Trial row is put only where no row has that key (Hatchery's unconditional PutItem would
  reset an existing row, e.g. one whose ``request_status`` hides it from the scan, to 0);
* a Trial row made for a user who already has a current pay model is not made current too
  (Hatchery's would be a second current row: ``multiple current pay models set`` on every
  ``/status`` of that user until an operator repairs the table);
* a charge that brings ``total-usage`` to a positive ``hard-limit`` turns an ``active`` row
  ``above limit``, the status the data-portal, the hatchery-reaper and the launch check read
  (Hatchery leaves that to whoever else writes the table; with only Hatchery, the limit never
  takes effect);
* every write goes through the pay-model client, as ``pay-models-dynamodb-arn``'s role when set
  (Hatchery's tracker uses its own default credentials there).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from launcher.paymodels import ABOVE_LIMIT, ACTIVE, PayModel, PayModelError, PayModels

log = logging.getLogger("hatchway.costs")

CHARGED_POD = "hatchway-charged-pod"  # the attribute recording the row's last charge


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    return str((response or {}).get("Error", {}).get("Code") or "")


class UsageLedger:
    """Writes ``total-usage`` (and Trial rows) into the commons' pay-model table."""

    def __init__(self, paymodels: PayModels) -> None:
        self.paymodels = paymodels
        self.table = paymodels.table
        # Hatchery's Config.Config.DefaultPayModel, zero fields and all
        self.default = paymodels.default or PayModel()

    @staticmethod
    def _key(user: str, pay_model_id: str) -> dict[str, Any]:
        return {"user_id": {"S": user}, "bmh_workspace_id": {"S": pay_model_id}}

    async def _update(self, what: str, **request: Any) -> dict[str, Any] | None:
        """One UpdateItem/PutItem; None when its condition did not hold."""
        client = await self.paymodels.table_client()  # PayModelError when unreachable
        call = client.put_item if "Item" in request else client.update_item
        try:
            answer: dict[str, Any] = await call(TableName=self.table, **request)
            return answer
        except Exception as exc:  # botocore's ClientError, connection errors
            if _code(exc) == "ConditionalCheckFailedException":
                return None
            raise PayModelError(f"{what} failed: {exc}") from exc

    async def ensure_pay_model(self, user: str, pay_model_id: str) -> bool:
        """Hatchery's ``ensureUserInPayModelTable``: when none of the user's visible rows has
        the pod's pay-model id, a Trial row (``default-pay-model`` with this id and user,
        active, local, usage 0) is put. True when one was made."""
        rows = await self.paymodels.rows(user)
        if any(row.id == pay_model_id for row in rows):
            return False
        trial = dataclasses.replace(
            self.default, id=pay_model_id, user=user, status=ACTIVE, local=True, ecs=False,
            total_usage=0.0, current=not any(row.current for row in rows))
        made = await self._update(
            f"creating a Trial pay model for {user}", Item=trial.to_item(),
            ConditionExpression="attribute_not_exists(bmh_workspace_id)")
        if made is None:
            log.info("pay model %s of %s exists but is not active: left as it is",
                     pay_model_id, user)
            return False
        log.info("created a Trial pay model %s for %s", pay_model_id, user)
        return True

    async def charge(self, user: str, pay_model_id: str, amount: str, pod_uid: str) -> bool:
        """Hatchery's ``UpdatePayModelCost``: ``total-usage += amount`` (a missing row is made,
        as UpdateItem does), once per pod. False when this pod was charged already."""
        done = await self._update(
            f"charging {amount} to {user}'s pay model {pay_model_id}",
            Key=self._key(user, pay_model_id),
            UpdateExpression="SET #C = if_not_exists(#C, :zero) + :inc, #P = :pod",
            ConditionExpression="attribute_not_exists(#P) OR #P <> :pod",
            ExpressionAttributeNames={"#C": "total-usage", "#P": CHARGED_POD},
            ExpressionAttributeValues={":inc": {"N": amount}, ":zero": {"N": "0"},
                                       ":pod": {"S": pod_uid}})
        return done is not None

    async def enforce_hard_limit(self, user: str, pay_model_id: str) -> bool:
        """An ``active`` row whose ``total-usage`` has reached its positive ``hard-limit``
        becomes ``above limit``. True when it changed."""
        changed = await self._update(
            f"marking {user}'s pay model {pay_model_id} above its limit",
            Key=self._key(user, pay_model_id),
            UpdateExpression="SET #S = :above",
            ConditionExpression="#S = :active AND #H > :zero AND #C >= #H",
            ExpressionAttributeNames={"#S": "request_status", "#H": "hard-limit",
                                      "#C": "total-usage"},
            ExpressionAttributeValues={":above": {"S": ABOVE_LIMIT}, ":active": {"S": ACTIVE},
                                       ":zero": {"N": "0"}})
        if changed is not None:
            log.warning("%s's pay model %s reached its hard limit: now %r", user,
                        pay_model_id, ABOVE_LIMIT)
        return changed is not None
