"""The fast path's per-request exchange (proxy/relay/fast/exchange.py), without a socket: its
phases move along one table, and the rules for retry, reuse, close and handoff are its own."""

from __future__ import annotations

import pytest

from proxy.relay.fast.exchange import NEXT, Exchange, IllegalStep, Phase, Step
from proxy.relay.fast.head import parse_request_head

LIVE = (Phase.ADMITTING, Phase.CONNECTING, Phase.BODY, Phase.ANSWER)
ENDED = (Phase.DONE, Phase.HANDED, Phase.FAILED, Phase.SPLICED)


def exchange(method: str = "GET", *, keep_alive: bool = True) -> Exchange:
    req = parse_request_head(f"{method} /p HTTP/1.1\r\nHost: gw\r\n\r\n".encode())
    assert req is not None
    return Exchange(req, head_len=30, keep_alive=keep_alive)


def walk(x: Exchange, *steps: Step) -> Exchange:
    for step in steps:
        x.step(step)
    return x


def answering(method: str = "GET") -> Exchange:
    """An exchange whose whole request went out (replay kept), waiting for its answer."""
    x = walk(exchange(method), Step.SEND_ALL)
    x.replay = b"the request"
    return x


def test_a_new_exchange_is_admitting() -> None:
    assert exchange().phase == Phase.ADMITTING


def test_a_plain_request_goes_admitting_answer_done() -> None:
    x = exchange()
    assert [x.step(Step.SEND_ALL), x.step(Step.ANSWERED)] == [Phase.ANSWER, Phase.DONE]


def test_a_request_without_a_pooled_connection_connects_first() -> None:
    x = exchange()
    assert [x.step(Step.CONNECT), x.step(Step.SEND_HEAD), x.step(Step.SEND_ALL)] == [
        Phase.CONNECTING, Phase.BODY, Phase.ANSWER]


def test_a_101_splices() -> None:
    assert walk(exchange(), Step.SEND_ALL, Step.UPGRADE).phase == Phase.SPLICED


@pytest.mark.parametrize("phase", LIVE)
def test_every_live_phase_can_fail(phase: Phase) -> None:
    assert NEXT[phase][Step.FAIL] == Phase.FAILED


@pytest.mark.parametrize("phase", ENDED)
def test_an_ended_exchange_takes_no_step(phase: Phase) -> None:
    assert all(nxt is None for nxt in NEXT[phase])


def test_a_step_the_table_lacks_raises_and_leaves_the_phase() -> None:
    x = exchange()
    with pytest.raises(IllegalStep, match="ANSWERED in ADMITTING"):
        x.step(Step.ANSWERED)
    assert x.phase == Phase.ADMITTING


@pytest.mark.parametrize("steps", [(), (Step.CONNECT,)], ids=["admitting", "connecting"])
def test_nothing_sent_yet_may_be_handed_to_aiohttp(steps: tuple[Step, ...]) -> None:
    x = walk(exchange(), *steps)
    assert x.can_hand_off()
    assert x.step(Step.DECLINE) == Phase.HANDED


@pytest.mark.parametrize("steps", [(Step.SEND_HEAD,), (Step.SEND_ALL,)], ids=["body", "answer"])
def test_a_request_sent_to_a_workspace_is_never_handed_to_aiohttp(
        steps: tuple[Step, ...]) -> None:
    x = walk(exchange(), *steps)
    assert not x.can_hand_off()
    with pytest.raises(IllegalStep):
        x.step(Step.DECLINE)


# -- retry: the HTTP client's classic race, and nothing else --------------------------------

def test_an_idempotent_request_on_a_reused_connection_closed_unanswered_is_retried() -> None:
    x = answering("GET")
    assert x.may_retry(reused=True, answered_any=False)
    assert x.step(Step.RETRY) == Phase.CONNECTING


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_a_non_idempotent_request_is_never_retried(method: str) -> None:
    assert not answering(method).may_retry(reused=True, answered_any=False)


def test_a_fresh_connection_that_closed_is_not_retried() -> None:
    assert not answering().may_retry(reused=False, answered_any=False)


def test_a_connection_that_began_an_answer_is_not_retried() -> None:
    assert not answering().may_retry(reused=True, answered_any=True)


def test_an_answer_already_passed_on_is_not_retried() -> None:
    x = answering()
    x.resp_started = True
    assert not x.may_retry(reused=True, answered_any=False)


def test_a_request_is_retried_once() -> None:
    x = answering()
    x.retried = True
    assert not x.may_retry(reused=True, answered_any=False)


def test_a_streamed_body_cannot_be_retried() -> None:
    x = walk(exchange("PUT"), Step.SEND_HEAD)  # the body went on as it came: no replay
    assert not x.may_retry(reused=True, answered_any=False)


# -- after the answer ----------------------------------------------------------------------

def test_a_keep_alive_answer_pools_the_workspace_and_keeps_the_browser() -> None:
    assert answering().answered(reusable=True) == (True, False)


def test_a_connection_close_request_closes_the_browser_after_its_answer() -> None:
    x = walk(exchange(keep_alive=False), Step.SEND_ALL)
    assert x.answered(reusable=True) == (True, True)


def test_an_answer_before_the_body_was_in_reuses_neither_connection() -> None:
    x = walk(exchange("PUT"), Step.SEND_HEAD)
    assert x.answered(reusable=True) == (False, True)
    assert x.phase == Phase.DONE


def test_a_workspace_that_will_close_is_not_pooled() -> None:
    assert answering().answered(reusable=False) == (False, False)
