"""How long a running workspace may live, one rule for the culler and for ``/status``.

Idle: in a Gen3 commons two things end an idle Jupyter workspace. gen3-helm's hatchery-reaper
(helm/hatchery/templates/hatchery-reaper-cronjob.yaml, lines 69 and 100-114) terminates every
Running or Launching workspace whose Jupyter ``api/status`` ``last_activity`` is older than
its one global limit (``hatchery.reaper.idleTimeoutSeconds``, 3600 s), whatever the option's
``shutdown_no_activity_timeout`` says; and Jupyter itself exits after that timeout when no
kernel is left. The reaper's limit therefore caps every option, and an option's own shorter
limit is what Hatchery's ``/status`` announces to the portal (pods.go 222-230): the limit
enforced is the smaller of the two that are set. ``/status`` reports that one, so the portal's
banner comes five minutes before the workspace really goes (Hatchery's announces 90 min for
gen3-helm's default option while the reaper ends it at 60).

Maximum age: a workspace ends this long after it started, whatever its activity; an option's
own ``max-age-seconds`` (hatchway's key in hatchery.json, 0: none) replaces the global setting.

The portal (data-portal src/Workspace/WorkspaceSessionMonitor.js 36-51) warns from two fields
only: remaining = ``idleTimeLimit`` - (now - ``lastActivityTime``), a banner within 5 minutes,
a "terminated" popup at 0, nothing unless both are positive. An approaching maximum age is
said through the same fields: ``lastActivityTime`` is moved back so that the remaining time is
the nearer of the two ends (or, with no idle limit, the age limit is reported as the limit and
the start as the last activity).
"""

from __future__ import annotations


def enforced_idle_ms(option_ms: int, global_ms: int) -> int:
    """The idle limit in force: the smaller of the option's and the global one that are set
    (positive); 0 when neither is."""
    set_ = [ms for ms in (option_ms, global_ms) if ms > 0]
    return min(set_) if set_ else 0


def max_age_ms(option_seconds: int | None, global_seconds: int) -> int:
    """The option's own maximum age when it has one (0 there means none), else the global."""
    seconds = global_seconds if option_seconds is None else option_seconds
    return max(0, seconds) * 1000


def past_max_age(now_ms: int, started_ms: int, limit_ms: int) -> bool:
    return limit_ms > 0 and started_ms > 0 and now_ms - started_ms >= limit_ms


def portal_fields(idle_ms: int, last_ms: int, started_ms: int,
                  age_limit_ms: int) -> tuple[int, int]:
    """``(idleTimeLimit, lastActivityTime)`` for ``/status``: the idle pair as it is, unless a
    maximum age ends the workspace sooner, which the portal then counts down to instead."""
    if age_limit_ms <= 0 or started_ms <= 0:
        return idle_ms, last_ms
    ends_ms = started_ms + age_limit_ms
    if idle_ms <= 0 or last_ms <= 0:  # the portal says nothing without both: age alone
        return age_limit_ms, started_ms
    if last_ms + idle_ms <= ends_ms:  # idleness ends it first
        return idle_ms, last_ms
    return idle_ms, max(1, ends_ms - idle_ms)
