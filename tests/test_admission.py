"""The one admission sequence (proxy/admission/sequence.py), asked directly: session →
authorization → route → Origin, as the fast path, the aiohttp relay and Envoy's check all ask
it. No sockets: the verdicts themselves (each path's answers are tested end to end elsewhere)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from launcher.routes import Route, RouteTable
from proxy.admission.authz import AllowAll, Allowlist, Arborist
from proxy.admission.sequence import Admission, Verdict
from proxy.gateway import Authorizer
from proxy.sessions.devissuer import DevIssuer
from proxy.sessions.jwks import KeyStore
from proxy.sessions.tokens import Identity, SessionError, SessionValidator
from proxy.settings import Settings

PROXY = "/lw-workspace/proxy/"
ALICE = Identity(user="alice", token="t", expires_at=2e9)


@pytest.fixture
def issuer(tmp_path: Path) -> DevIssuer:
    return DevIssuer(tmp_path, issuer="test-issuer")


@pytest.fixture
def routes() -> RouteTable:
    table = RouteTable()
    table.set("alice", Route("127.0.0.1", 9001, "/ws/alice/"))
    table.set("bob", Route("127.0.0.1", 9002, "/ws/bob/"))
    table.set("carol", Route("127.0.0.1", 9003, "/", ready=False))
    return table


def admission(issuer: DevIssuer, routes: RouteTable, authz: Authorizer | None = None,
              **settings: object) -> Admission:
    keys = KeyStore(issuer.fetch_jwks)
    sessions = SessionValidator(keys, issuer="test-issuer")
    return Admission(dataclasses.replace(Settings(), **settings),  # type: ignore[arg-type]
                     sessions, authz or AllowAll(), routes)


@pytest.fixture
def adm(issuer: DevIssuer, routes: RouteTable) -> Admission:
    return admission(issuer, routes)


# -- 1. session ---------------------------------------------------------------------------

def test_the_token_is_the_bearer_or_the_session_cookie(adm: Admission) -> None:
    assert adm.token(["Bearer from-header"], []) == "from-header"
    assert adm.token([], ["a=1; access_token=from-cookie"]) == "from-cookie"


def test_the_same_token_twice_is_one_token(adm: Admission) -> None:
    assert adm.token(["Bearer t"], ["access_token=t"]) == "t"


@pytest.mark.parametrize(("bearers", "cookies"), [
    (["Bearer one", "Bearer two"], []), ([], ["access_token=one", "access_token=two"]),
    (["Bearer one"], ["access_token=two"])], ids=["two bearers", "two cookies", "one of each"])
def test_two_different_tokens_are_refused_with_400(adm: Admission, bearers: list[str],
                                                   cookies: list[str]) -> None:
    with pytest.raises(SessionError) as caught:
        adm.token(bearers, cookies)
    assert caught.value.status == 400


async def test_a_proven_token_names_its_user_and_is_then_known_from_memory(
        adm: Admission, issuer: DevIssuer) -> None:
    token = issuer.mint("alice")
    assert adm.known(token) is None
    assert (await adm.identify(token)).user == "alice"
    known = adm.known(token)
    assert known is not None and known.user == "alice"


async def test_a_token_from_another_issuer_is_refused_with_401(
        adm: Admission, tmp_path: Path) -> None:
    stranger = DevIssuer(tmp_path / "other", issuer="test-issuer")
    with pytest.raises(SessionError) as caught:
        await adm.identify(stranger.mint("alice"))
    assert caught.value.status == 401


# -- 2. authorization ---------------------------------------------------------------------

async def test_everyone_may_use_workspaces_without_io_when_all_are_allowed(
        adm: Admission) -> None:
    assert adm.allowed_now(ALICE) is True
    assert await adm.allowed(ALICE) is True


async def test_an_allowlist_answers_without_io(issuer: DevIssuer, routes: RouteTable) -> None:
    adm = admission(issuer, routes, Allowlist(["bob"]))
    assert adm.allowed_now(ALICE) is False
    assert await adm.allowed(ALICE) is False


def test_arborist_is_asked_not_answered_from_memory(issuer: DevIssuer,
                                                    routes: RouteTable) -> None:
    arborist = Arborist("http://127.0.0.1:9/", lambda: None)  # type: ignore[arg-type, return-value]
    assert admission(issuer, routes, arborist).allowed_now(ALICE) is None


# -- 3. route -----------------------------------------------------------------------------

def test_the_users_own_route_gets_the_path_after_the_prefix_with_its_rewrite(
        adm: Admission, routes: RouteTable) -> None:
    assert adm.place("alice", PROXY + "lab/tree?x=1") == (
        Verdict.ADMIT, routes.get("alice"), "/ws/alice/lab/tree?x=1")


def test_the_user_picks_the_route_never_the_path(adm: Admission) -> None:
    verdict, route, target = adm.place("alice", PROXY + "../proxy/bob/api")
    assert verdict == Verdict.ADMIT and route is not None and route.port == 9001
    assert target == "/ws/alice/bob/api"


def test_dot_segments_that_leave_the_prefix_are_outside(adm: Admission) -> None:
    assert adm.place("alice", PROXY + "../options")[0] == Verdict.OUTSIDE


def test_an_encoded_slash_is_a_bad_path_with_its_reason(adm: Admission) -> None:
    assert adm.place("alice", PROXY + "a%2Fb") == (
        Verdict.BAD_PATH, None, "encoded '/', '\\' or NUL in the request path")


def test_a_path_not_starting_with_slash_is_a_bad_path(adm: Admission) -> None:
    assert adm.place("alice", "*")[0] == Verdict.BAD_PATH


def test_the_prefix_without_its_slash_redirects_keeping_the_query(adm: Admission) -> None:
    assert adm.place("alice", PROXY.rstrip("/") + "?a=1") == (Verdict.BARE_PREFIX, None, "?a=1")


def test_a_user_without_a_route_has_no_workspace(adm: Admission) -> None:
    assert adm.place("dave", PROXY) == (Verdict.NO_WORKSPACE, None, "")


def test_a_route_not_ready_is_launching_unless_the_caller_admits_launching(
        adm: Admission) -> None:
    assert adm.place("carol", PROXY)[0] == Verdict.LAUNCHING
    assert adm.place("carol", PROXY, launching_ok=True)[0] == Verdict.ADMIT


# -- 4. Origin ----------------------------------------------------------------------------

def test_a_websocket_from_the_gateways_own_host_is_admitted(adm: Admission) -> None:
    assert adm.place("alice", PROXY + "ws", websocket=True, origin="http://gw:8080",
                     host="gw:8080")[0] == Verdict.ADMIT


def test_a_websocket_from_another_site_is_refused_after_the_route(adm: Admission) -> None:
    assert adm.place("alice", PROXY + "ws", websocket=True, origin="https://evil.example",
                     host="gw:8080")[0] == Verdict.CROSS_ORIGIN
    assert adm.place("dave", PROXY + "ws", websocket=True, origin="https://evil.example",
                     host="gw:8080")[0] == Verdict.NO_WORKSPACE


def test_a_websocket_without_origin_is_not_a_browsers_and_is_admitted(adm: Admission) -> None:
    assert adm.place("alice", PROXY, websocket=True, origin=None, host="gw")[0] == Verdict.ADMIT


def test_the_origin_of_a_plain_request_is_not_judged(adm: Admission) -> None:
    assert adm.place("alice", PROXY, origin="https://evil.example", host="gw")[0] == Verdict.ADMIT


def test_with_a_public_url_only_its_origin_is_the_gateways_own(
        issuer: DevIssuer, routes: RouteTable) -> None:
    adm = admission(issuer, routes, public_url="https://commons.example.org/portal")
    own = adm.place("alice", PROXY, websocket=True, origin="https://commons.example.org",
                    host="evil.example")
    by_host = adm.place("alice", PROXY, websocket=True, origin="http://gw", host="gw")
    assert (own[0], by_host[0]) == (Verdict.ADMIT, Verdict.CROSS_ORIGIN)


def test_an_allowed_origin_is_admitted(issuer: DevIssuer, routes: RouteTable) -> None:
    adm = admission(issuer, routes, allowed_origins=["https://portal.example.org"])
    assert adm.place("alice", PROXY, websocket=True, origin="https://portal.example.org",
                     host="gw")[0] == Verdict.ADMIT
