"""One request on a browser connection, from its head to the end of its answer.

The connection (``front.Front``) owns what outlives a request: the transport, read-ahead, the
connection caps and the handoff to aiohttp. Each request it takes up gets a fresh Exchange (as
uvicorn gives each request a RequestResponseCycle), so nothing of one request is reset by hand
for the next. An exchange moves through ``Phase`` by ``Step`` along one table (``NEXT``) and
touches no socket: the connection does the I/O and then tells its exchange what happened; a
step the table does not have is a bug and raises. The rules that decide what may happen next
(retry, reuse, close) are methods here, so they are tested without a socket
(tests/test_exchange.py).

    ADMITTING ──CONNECT──▶ CONNECTING ◀──RETRY── ANSWER ──ANSWERED──▶ DONE
        │                      │                   ▲  │
        ├──SEND_HEAD / SEND_ALL┴─▶ BODY ──SEND_ALL─┘  └──UPGRADE──▶ SPLICED
        └──DECLINE (also from CONNECTING) ──▶ HANDED     (FAIL from any live phase ▶ FAILED)
"""

from __future__ import annotations

from enum import IntEnum
from typing import TYPE_CHECKING

from .chunked import ChunkedScanner
from .head import RequestHead

if TYPE_CHECKING:
    from launcher.routes import Route

    from .interfaces import Workspace
    from .kernelcopy import Pump


class Phase(IntEnum):
    ADMITTING = 0  # the head is read; the admission sequence is asked (maybe a service)
    CONNECTING = 1  # admitted, no pooled connection: one to the workspace is being made
    BODY = 2  # the head went to the workspace; the body follows as it arrives
    ANSWER = 3  # the request went in full; the workspace's answer is relayed
    DONE = 4  # the answer went to the browser in full
    HANDED = 5  # declined before any of it reached a workspace: aiohttp answers it
    FAILED = 6  # ended by the gateway's own answer, or cut short: the connection closes
    SPLICED = 7  # a WebSocket: browser and workspace are one byte pipe now


class Step(IntEnum):
    CONNECT = 0  # no pooled connection to the workspace: make one
    SEND_HEAD = 1  # the head, and the part of the body that is here, went out
    SEND_ALL = 2  # the whole request went out
    ANSWERED = 3  # the whole answer went to the browser
    RETRY = 4  # the workspace closed a reused connection without answering (``may_retry``)
    DECLINE = 5  # not the fast path's: hand the request to aiohttp
    FAIL = 6  # the gateway answers (400, 408, 502, 503, 504) or cuts the answer; then closes
    UPGRADE = 7  # 101 from the workspace


_LIVE = (Phase.ADMITTING, Phase.CONNECTING, Phase.BODY, Phase.ANSWER)
_TABLE: dict[Phase, dict[Step, Phase]] = {
    Phase.ADMITTING: {Step.CONNECT: Phase.CONNECTING, Step.SEND_HEAD: Phase.BODY,
                      Step.SEND_ALL: Phase.ANSWER, Step.DECLINE: Phase.HANDED},
    Phase.CONNECTING: {Step.SEND_HEAD: Phase.BODY, Step.SEND_ALL: Phase.ANSWER,
                       Step.DECLINE: Phase.HANDED},
    # the workspace may answer before the body is in: the connection then closes
    Phase.BODY: {Step.SEND_ALL: Phase.ANSWER, Step.ANSWERED: Phase.DONE},
    Phase.ANSWER: {Step.ANSWERED: Phase.DONE, Step.RETRY: Phase.CONNECTING,
                   Step.UPGRADE: Phase.SPLICED},
}
for _phase in _LIVE:
    _TABLE[_phase][Step.FAIL] = Phase.FAILED
# NEXT[phase][step]: the phase after ``step``, or None where the step cannot happen. A list of
# lists: a transition is two index operations, no hashing and no Enum lookup.
NEXT: list[list[Phase | None]] = [[_TABLE.get(p, {}).get(s) for s in Step] for p in Phase]

IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"})
# Module names for the members used per request: reading ``Phase.BODY`` off the class costs
# ~300 ns on CPython 3.11 (the enum's class attribute lookup), a module global ~20 ns.
_ADMITTING, _BODY, _ANSWER = Phase.ADMITTING, Phase.BODY, Phase.ANSWER
_ANSWERED, _DECLINE = Step.ANSWERED, Step.DECLINE


class IllegalStep(RuntimeError):
    """A step the table does not allow from the exchange's phase: a bug in the caller."""


class Exchange:
    """One request's state on the fast path (the connection holds at most one at a time)."""

    __slots__ = ("phase", "req", "head_len", "route", "websocket", "user", "out_head", "up",
                 "body_left", "mark", "chunks", "replay", "resp_started", "keep_alive",
                 "retried", "began", "pump")

    def __init__(self, req: RequestHead, head_len: int, keep_alive: bool) -> None:
        self.phase = _ADMITTING
        self.req = req
        self.head_len = head_len  # the head's bytes at the start of the connection's buffer
        self.keep_alive = keep_alive  # the connection stays open after this answer
        self.route: Route | None = None
        self.websocket = False
        self.user = ""
        self.out_head = b""  # the head as the workspace gets it
        self.up: Workspace | None = None  # the workspace connection carrying it
        # body bytes still to come (Content-Length), or counting down by bytes read (chunked:
        # only the sweep reads it then, to see the body move); mark: its value at the last sweep
        self.body_left = 0
        self.mark = 0
        self.chunks: ChunkedScanner | None = None
        self.replay: bytes | None = None  # the raw request, while it could be sent again
        self.resp_started = False  # answer bytes went to the browser: no retry, no 502
        self.retried = False
        self.began = 0  # monotonic_ns when admitted (time to first byte)
        self.pump: Pump | None = None  # the body moving in the kernel (its ``left`` counts)

    def step(self, step: Step) -> Phase:
        """Move along the table; IllegalStep when ``step`` cannot happen now."""
        nxt = NEXT[self.phase][step]
        if nxt is None:
            raise IllegalStep(f"{step.name} in {self.phase.name}")
        self.phase = nxt
        return nxt

    def may_retry(self, *, reused: bool, answered_any: bool) -> bool:
        """Whether a workspace connection that closed now may be given the request again, on
        a fresh connection. Only the HTTP client's classic race: a pooled keep-alive connection
        (``reused``) closed by the workspace, without a byte of answer (``answered_any``), as
        an idempotent request went out whole (``replay`` kept), and only once. Sending such a
        request twice is safe even if it did arrive (RFC 9110 9.2.2); anything else could run
        twice, so it gets a 502."""
        return (self.phase == _ANSWER and not self.resp_started and reused
                and not answered_any and self.replay is not None and not self.retried
                and self.req.method in IDEMPOTENT)

    def answered(self, reusable: bool) -> tuple[bool, bool]:
        """The answer went out in full (step ANSWERED). Returns (give the workspace connection
        back to the pool, close the browser's connection): a body the workspace did not wait
        for is still arriving, so neither is reused then."""
        body_unfinished = self.phase == _BODY
        self.step(_ANSWERED)
        return reusable and not body_unfinished, body_unfinished or not self.keep_alive

    def can_hand_off(self) -> bool:
        """Whether aiohttp may take this request over: nothing of it reached a workspace (or,
        on a retry, only an idempotent request that is being sent again anyway)."""
        return NEXT[self.phase][_DECLINE] is not None
