"""Pay models, found as Hatchery finds them (paymodels.go): ``default-pay-model`` and
``pay-models`` from hatchery.json, and the DynamoDB table ``pay-models-dynamodb-table``
(partition key ``user_id``, sort key ``bmh_workspace_id``), read through aiobotocore.

Hatchery's rules are kept as they are, quirks included, because the data-portal and the
hatchery-reaper read their results: a user's pay models are the table's rows for the user whose
``request_status`` is ``active`` or ``above limit``; the current one is the row flagged
``current_pay_model``; with no such row but other rows there is *no* current pay model; with no
rows at all the default pay model is current. ``pay-models`` from the config count only when
``/setpaymodel`` names one of them (Hatchery reads them nowhere else).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Collection, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from .errors import ConfigError
from .gojson import float32, go_float32, go_string

log = logging.getLogger("hatchway.paymodels")

ACTIVE, ABOVE_LIMIT = "active", "above limit"
_IN_LIMIT = 100  # DynamoDB's most operands of one IN comparator

# (attribute, Go kind) in the order of Go's PayModel struct: its JSON and DynamoDB names.
_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("id", "bmh_workspace_id", "s"), ("name", "workspace_type", "s"),
    ("user", "user_id", "s"), ("aws_account_id", "account_id", "s"),
    ("status", "request_status", "s"), ("local", "local", "b"), ("region", "region", "s"),
    ("ecs", "ecs", "b"), ("subnet", "subnet", "i"), ("hard_limit", "hard-limit", "f32"),
    ("soft_limit", "soft-limit", "f32"), ("total_usage", "total-usage", "f32"),
    ("current", "current_pay_model", "b"),
)


class PayModelError(Exception):
    """Pay models could not be read or written (Hatchery answers these with 500 and the text)."""


@dataclass(frozen=True)
class PayModel:
    """Hatchery's ``PayModel`` struct; ``to_json`` writes it byte for byte as Go does."""

    id: str = ""
    name: str = ""
    user: str = ""
    aws_account_id: str = ""
    status: str = ""
    local: bool = False
    region: str = ""
    ecs: bool = False
    subnet: int = 0
    hard_limit: float = 0.0
    soft_limit: float = 0.0
    total_usage: float = 0.0
    current: bool = False

    @property
    def is_zero(self) -> bool:
        """Go's ``PayModel{} == pm``: an unset default pay model."""
        return self == PayModel()

    def to_json(self) -> str:
        parts = []
        for attr, key, kind in _FIELDS:
            v = getattr(self, attr)
            text = (go_string(v) if kind == "s" else ("true" if v else "false") if kind == "b"
                    else go_float32(v) if kind == "f32" else str(int(v)))
            parts.append(f"{go_string(key)}:{text}")
        return "{" + ",".join(parts) + "}"

    @classmethod
    def from_config(cls, doc: Any, source: str, where: str) -> PayModel:
        """A pay model from hatchery.json, read as Go's ``json.Unmarshal`` reads it (keys
        matched case-insensitively, unknown keys ignored, a wrong type an error)."""
        if not isinstance(doc, dict):
            raise ConfigError(source, where, "an object", doc)
        by_key = {k.lower(): k for k in doc}
        values: dict[str, Any] = {}
        for attr, key, kind in _FIELDS:
            name = key if key in doc else by_key.get(key.lower())
            if name is None or doc[name] is None:
                continue
            v = doc[name]
            ok = (isinstance(v, str) if kind == "s" else isinstance(v, bool) if kind == "b"
                  else isinstance(v, int | float) and not isinstance(v, bool)
                  and (kind != "i" or float(v).is_integer()))
            if not ok:
                expected = {"s": "a string", "b": "a boolean", "i": "an integer"}.get(
                    kind, "a number")
                raise ConfigError(source, f"{where}.{name}", expected, v)
            values[attr] = float32(v) if kind == "f32" else int(v) if kind == "i" else v
        return cls(**values)

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> PayModel:
        """A DynamoDB row (attribute-value form), as ``dynamodbattribute`` unmarshals it:
        attributes by JSON name, missing or NULL ones zero, a wrong type an error."""
        values: dict[str, Any] = {}
        for attr, key, kind in _FIELDS:
            av = item.get(key)
            if not av or av.get("NULL"):
                continue
            try:
                if kind == "s":
                    values[attr] = str(av["S"])
                elif kind == "b":
                    values[attr] = bool(av["BOOL"])
                elif kind == "i":
                    values[attr] = int(Decimal(av["N"]))
                else:
                    values[attr] = float32(float(av["N"]))
            except (KeyError, ValueError, ArithmeticError):
                raise PayModelError(
                    f"cannot unmarshal pay model attribute {key!r}: {av!r}") from None
        return cls(**values)

    def to_item(self) -> dict[str, Any]:
        """The row as Hatchery's ``dynamodbattribute.MarshalMap`` writes it (costTracker.go
        ``createDefaultTrialPayPayModel``): every field; an empty string NULL (the SDK's
        ``NullEmptyString``); a float32 widened to float64 and printed shortest, no exponent
        (``strconv.FormatFloat(float64(v), 'f', -1, 64)``: 0.1 is 0.10000000149011612)."""
        item: dict[str, Any] = {}
        for attr, key, kind in _FIELDS:
            v = getattr(self, attr)
            if kind == "s":
                item[key] = {"S": v} if v else {"NULL": True}
            elif kind == "b":
                item[key] = {"BOOL": bool(v)}
            elif kind == "i":
                item[key] = {"N": str(int(v))}
            else:
                text = format(Decimal(repr(float32(v))), "f")
                item[key] = {"N": text.rstrip("0").rstrip(".") if "." in text else text}
        return item


@dataclass(frozen=True)
class AllPayModels:
    """Hatchery's ``AllPayModels``: the answer of ``/allpaymodels``."""

    current: PayModel | None
    all: list[PayModel]

    def to_json(self) -> str:
        current = self.current.to_json() if self.current is not None else "null"
        return (f'{{"current_pay_model":{current},'
                f'"all_pay_models":[{",".join(p.to_json() for p in self.all)}]}}')


def _rows(items: list[dict[str, Any]]) -> list[PayModel]:
    return [PayModel.from_item(item) for item in items]


class HatcheryPayModels(Protocol):
    """What pay models read of hatchery.json (launcher.options.HatcheryConfig)."""

    @property
    def source(self) -> str: ...
    @property
    def default_pay_model(self) -> PayModel: ...
    @property
    def pay_models(self) -> tuple[PayModel, ...]: ...
    @property
    def pay_models_dynamodb_table(self) -> str: ...
    @property
    def pay_models_dynamodb_arn(self) -> str: ...


class PayModels:
    """Where a commons keeps its pay models: the config and, optionally, a DynamoDB table.

    ``current_pay_model(user)`` is the one question other parts ask (the launch check, the
    ``pay_models`` authz rule); the rest serves the four pay-model endpoints."""

    def __init__(self, *, default: PayModel, configured: list[PayModel], table: str = "",
                 role_arn: str = "", region: str = "us-east-1",
                 endpoint_url: str = "") -> None:
        self.default = None if default.is_zero else default
        # Hatchery's PayModelMap: one per user, the last listed wins
        self._configured = {p.user: p for p in configured}
        self.table = table
        self.role_arn = role_arn
        self.region = region
        self.endpoint_url = endpoint_url or None
        self._stack: AsyncExitStack | None = None
        self._client: Any = None
        self._client_expires = math.inf
        self._lock = asyncio.Lock()

    @classmethod
    def from_hatchery(cls, config: HatcheryPayModels, *, region: str = "us-east-1",
                      endpoint_url: str = "") -> PayModels:
        table = config.pay_models_dynamodb_table
        if table:
            try:
                import aiobotocore  # noqa: F401
            except ImportError:
                raise ConfigError(config.source, "pay-models-dynamodb-table",
                                  "aiobotocore installed (pip install 'hatchway[aws]')",
                                  table) from None
        return cls(default=config.default_pay_model, configured=list(config.pay_models),
                   table=table, role_arn=config.pay_models_dynamodb_arn,
                   region=region, endpoint_url=endpoint_url)

    @property
    def configured(self) -> bool:
        """Whether this commons has pay models at all (else every answer is Hatchery's
        "not set" and launches are not gated)."""
        return bool(self.default or self.table)

    # --- Hatchery's getCurrentPayModel / getPayModelsForUser ---------------------------------

    async def current_pay_model(self, user: str) -> PayModel | None:
        """The user's current pay model, or None (the ``pay_models`` authz rule's "None").
        Raises PayModelError when the table cannot be read or holds several current rows."""
        if not self.table:
            return self.default
        return self._current(await self._scan(user))

    def _current(self, items: list[dict[str, Any]]) -> PayModel | None:
        """The current pay model among the user's rows. Hatchery scans twice, for the rows
        flagged current and, when there is none, for all of them; the flag is in every row, so
        one scan answers both, each row read as the scan asking for it would read it."""
        current = [PayModel.from_item(item) for item in items
                   if item.get("current_pay_model") == {"BOOL": True}]
        if len(current) > 1:
            raise PayModelError("multiple current pay models set")
        if current:
            return current[0]
        if not items:
            return self.default
        _rows(items)  # the second scan reads every row: one it cannot read is an error
        return None  # the user has pay models but has chosen none

    async def current_pay_models(self, users: Collection[str]) -> dict[str, PayModel | None]:
        """Each user's current pay model, as ``current_pay_model`` would answer it, from one
        Scan per ``_IN_LIMIT`` users (the culler asks for every workspace at once). A user
        whose rows cannot say (several current, an unreadable attribute) is left out and
        logged, as Hatchery's 500 leaves the reaper with nothing to act on. Raises
        PayModelError when the table cannot be read."""
        if not self.table:
            return {user: self.default for user in users}
        wanted = list(dict.fromkeys(users))
        by_user: dict[str, list[dict[str, Any]]] = {user: [] for user in wanted}
        for start in range(0, len(wanted), _IN_LIMIT):
            chunk = wanted[start:start + _IN_LIMIT]
            for item in await self._scan_users(chunk):
                by_user[item["user_id"]["S"]].append(item)
        found: dict[str, PayModel | None] = {}
        for user, items in by_user.items():
            try:
                found[user] = self._current(items)
            except PayModelError as exc:
                log.warning("cannot tell %s's current pay model: %s", user, exc)
        return found

    async def for_user(self, user: str) -> AllPayModels | None:
        """``{current_pay_model, all_pay_models}``; None where Hatchery has nothing to say."""
        if not user:
            raise PayModelError("no username sent in header")
        if not self.table:
            return None if self.default is None else AllPayModels(self.default, [self.default])
        items = await self._scan(user)
        rows, current = _rows(items), self._current(items)
        return AllPayModels(current, rows or ([current] if current is not None else []))

    async def set_current(self, user: str, pay_model_id: str) -> PayModel:
        """Make ``pay_model_id`` the user's current pay model (Hatchery's setCurrentPaymodel)."""
        rows = _rows(await self._scan(user))
        chosen = self._configured.get(user)
        if chosen is not None and chosen.id == pay_model_id:
            await self.reset_current(user, rows)
            return chosen
        for row in rows:
            if row.id == pay_model_id:
                await self.reset_current(user, rows)
                await self._flag(user, row.id, True)
                return row  # as read, before the update (Hatchery returns it so)
        raise PayModelError(f"no paymodel with id {pay_model_id} found for user {user}")

    async def reset_current(self, user: str, rows: list[PayModel] | None = None) -> None:
        """No pay model of the user's is current any more."""
        for row in rows if rows is not None else _rows(await self._scan(user)):
            await self._flag(user, row.id, False)

    # --- for the table's other writer (launcher.costs.ledger) ----------------------------------

    async def rows(self, user: str) -> list[PayModel]:
        """The user's active and above-limit rows (Hatchery's ``payModelsFromDatabase``)."""
        return _rows(await self._scan(user))

    async def table_client(self) -> Any:
        """The pooled DynamoDB client (as ``pay-models-dynamodb-arn``'s role, when set)."""
        return await self._dynamodb()

    # --- DynamoDB ------------------------------------------------------------------------------

    async def _scan(self, user: str) -> list[dict[str, Any]]:
        """The user's active and above-limit rows as DynamoDB items (Hatchery's
        payModelsFromDatabase, before unmarshalling). Every page is read; Hatchery reads only
        the first 1 MB of the table."""
        return await self._scan_users([user])

    async def _scan_users(self, users: list[str]) -> list[dict[str, Any]]:
        """Active and above-limit rows of ``users`` (at most ``_IN_LIMIT``), every page."""
        if not self.table:
            raise PayModelError("no 'pay-models-dynamodb-table' in the configuration")
        if len(users) == 1:  # Hatchery's own filter, as it sends it
            who, values = "#u = :u", {":u": {"S": users[0]}}
        else:
            keys = [f":u{i}" for i in range(len(users))]
            who = f"#u IN ({', '.join(keys)})"
            values = {key: {"S": user} for key, user in zip(keys, users, strict=True)}
        expr = f"{who} AND (#s = :active OR #s = :above)"
        names = {"#u": "user_id", "#s": "request_status"}
        values.update({":active": {"S": ACTIVE}, ":above": {"S": ABOVE_LIMIT}})
        client = await self._dynamodb()
        items: list[dict[str, Any]] = []
        args: dict[str, Any] = {"TableName": self.table, "FilterExpression": expr,
                                "ExpressionAttributeNames": names,
                                "ExpressionAttributeValues": values}
        try:
            while True:
                page = await client.scan(**args)
                items.extend(page.get("Items", []))
                if "LastEvaluatedKey" not in page:
                    return items
                args["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        except Exception as exc:  # botocore's ClientError, connection errors
            raise PayModelError(f"reading pay models failed: {exc}") from exc

    async def _flag(self, user: str, pay_model_id: str, current: bool) -> None:
        client = await self._dynamodb()
        try:
            await client.update_item(
                TableName=self.table,
                Key={"user_id": {"S": user}, "bmh_workspace_id": {"S": pay_model_id}},
                UpdateExpression="SET #CPM = :f",
                ExpressionAttributeNames={"#CPM": "current_pay_model"},
                ExpressionAttributeValues={":f": {"BOOL": current}},
                ReturnValues="ALL_NEW")
        except Exception as exc:
            raise PayModelError(f"updating pay model {pay_model_id} failed: {exc}") from exc

    async def _dynamodb(self) -> Any:
        """One pooled client; with ``pay-models-dynamodb-arn`` it runs as that role and is
        remade before the role's credentials expire."""
        async with self._lock:
            if self._client is not None and time.time() < self._client_expires:
                return self._client
            await self._close_client()
            from aiobotocore.config import AioConfig
            from aiobotocore.session import get_session

            session = get_session()
            stack = AsyncExitStack()
            # Every /status reads the table, as in Hatchery: an outage must answer in seconds,
            # not after botocore's default retries with backoff (about half a minute).
            kwargs: dict[str, Any] = {
                "region_name": self.region, "endpoint_url": self.endpoint_url,
                "config": AioConfig(connect_timeout=2, read_timeout=5,
                                    retries={"max_attempts": 2, "mode": "standard"})}
            try:
                if self.role_arn:
                    async with session.create_client("sts", **kwargs) as sts:
                        creds = (await sts.assume_role(RoleArn=self.role_arn,
                                                       RoleSessionName="hatchway"))["Credentials"]
                    kwargs.update(aws_access_key_id=creds["AccessKeyId"],
                                  aws_secret_access_key=creds["SecretAccessKey"],
                                  aws_session_token=creds["SessionToken"])
                    self._client_expires = creds["Expiration"].timestamp() - 300
                self._client = await stack.enter_async_context(
                    session.create_client("dynamodb", **kwargs))
            except Exception as exc:
                await stack.aclose()
                raise PayModelError(f"cannot reach the pay models table: {exc}") from exc
            self._stack = stack
            return self._client

    async def _close_client(self) -> None:
        stack, self._stack, self._client = self._stack, None, None
        self._client_expires = math.inf
        if stack is not None:
            await stack.aclose()

    async def close(self) -> None:
        async with self._lock:
            await self._close_client()

