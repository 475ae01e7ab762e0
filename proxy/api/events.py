"""The launcher's events as the gateway records them: a launch, a failed launch, a terminate
and a cull are each counted (``observe.metrics``), logged as one structured line, and
remembered for the launch page (the option running) and the stopped page
(``admission.stopped``). The Hatchery API and the culler call these;
``serve.wiring.install`` creates what they write to."""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiohttp import web

from ..admission import stopped
from ..observe import metrics

log = logging.getLogger("hatchway.lifecycle")
RUNNING_OPTIONS: web.AppKey[dict[str, str]] = web.AppKey("running_options", dict)


def running_option(app: web.Application, user: str) -> str:
    """The name of the option ``user`` launched through this process ("" when unknown: never
    launched here, or terminated since); the launch page names it."""
    return app[RUNNING_OPTIONS].get(user, "") if RUNNING_OPTIONS in app else ""


def launched(app: web.Application, user: str, option: str) -> None:
    app[metrics.METRICS].launched(user, option)
    app[RUNNING_OPTIONS][user] = option
    app[stopped.STOPPED].forget(user)
    log.info("launched %r for %s", option, user,
             extra={"event": "launch", "user": user, "option": option})


def launch_failed(app: web.Application, user: str, option: str, exc: BaseException,
                  cause: str | None = None) -> None:
    app[metrics.METRICS].launch_failed(str(exc), cause)
    log.info("launch of %r for %s failed: %s", option, user, exc,
             extra={"event": "launch_failed", "user": user, "option": option,
                    "reason": cause or metrics.launch_failure_cause(str(exc))})


def terminated(app: web.Application, user: str, reason: str, detail: str = "") -> None:
    """A workspace stopped by the gateway: ``user`` (Terminate), ``admin`` (an operator),
    ``idle``, ``max_age`` or ``over_limit`` (culled)."""
    app[metrics.METRICS].terminated(user, reason)
    app[RUNNING_OPTIONS].pop(user, None)
    app[stopped.STOPPED].remember(user, reason)
    log.info("terminated the workspace of %s (%s)%s", user, reason,
             f": {detail}" if detail else "",
             extra={"event": "terminate" if reason == "user" else "cull", "user": user,
                    "reason": reason, **({"detail": detail} if detail else {})})


def on_cull(app: web.Application) -> Callable[[str, str, str], None]:
    return lambda user, reason, detail: terminated(app, user, reason, detail)
