"""Services (and their EndpointSlices) in the user namespace → the route table.

A Service is a user's route when hatchway made it (label ``app.kubernetes.io/managed-by:
hatchway``; user, rewrite and TLS from its ``hatchway.gen3.org/*`` annotations) or — drop-in
mode, to stand in for Ambassador in front of an unchanged Go Hatchery — when it carries
Hatchery's ``getambassador.io/config`` Mapping: the user is the ``remote_user`` header match,
the upstream its ``service``, plus its ``rewrite`` and ``tls``.

The route goes to the Service's cluster DNS name (``route_to: service``; kube-proxy balances)
or straight to a ready endpoint from the Service's EndpointSlices (``route_to: endpoints``;
one hop less, and no cluster DNS needed). Either way it is ``ready`` only while an endpoint is
ready, so the relay answers 503 — not a connection error — while a pod is launching.

Every route carries ``source`` ``k8s:service/<ns>/<name>`` or ``k8s:ambassador/<ns>/<name>``;
a re-list replaces all ``k8s:`` routes at once and leaves other sources alone.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from launcher import yamlload
from launcher.names import hatchery_user, service_name
from launcher.routes import Route, RouteTable

from .specs import (
    AMBASSADOR_ANNOTATION,
    GEN3_USER_ANNOTATION,
    HATCHWAY,
    MANAGED_BY,
    REWRITE_ANNOTATION,
    TLS_ANNOTATION,
    USER_ANNOTATION,
    USER_ID_LABEL,
    user_id,
)
from .watching import Reflector

log = logging.getLogger("hatchway.kubernetes")
SOURCE_PREFIX = "k8s:"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
_CLUSTER_HOST = re.compile(r"^([a-z0-9-]+)\.([a-z0-9-]+)\.svc(\.[a-z0-9.-]+)?\.?$")


@dataclass(frozen=True)
class Claim:
    """One Service's claim to be ``user``'s route."""

    user: str
    service: str  # the claiming Service
    own: bool  # made by hatchway (beats a drop-in Mapping for the same user)
    host: str  # the upstream as the Service/Mapping names it
    port: int
    target: str  # the Service in this namespace whose endpoints serve it; "" if outside
    port_name: str
    rewrite: str
    tls: bool


def _truthy(value: Any) -> bool:
    return value is True or str(value).strip().lower() in ("true", "yes", "on", "1")


def parse_mapping(text: str) -> dict[str, Any] | None:
    """The routing facts of a ``getambassador.io/config`` annotation: the first Mapping that
    matches a ``remote_user`` header (Ambassador v1/v2, Emissary v3alpha1 spellings)."""
    try:
        docs = list(yamlload.safe_load_all(text))
    except yaml.YAMLError:
        return None
    for doc in docs:
        if not isinstance(doc, Mapping) or doc.get("kind") != "Mapping":
            continue
        spec: Mapping[str, Any] = doc["spec"] if isinstance(doc.get("spec"), Mapping) else doc
        headers = spec.get("headers") or {}
        user = headers.get("remote_user") if isinstance(headers, Mapping) else None
        service = str(spec.get("service") or "")
        if user is None or not service:
            continue
        rewrite = spec.get("rewrite")
        return {"user": str(user), "service": service,
                "rewrite": "/" if rewrite in (None, "") else str(rewrite),
                "tls": _truthy(spec.get("tls")) or service.startswith("https://")}
    return None


def _split_service(service: str, tls: bool) -> tuple[str, int]:
    scheme, sep, rest = service.partition("://")
    if not sep:
        scheme, rest = ("https" if tls else "http"), service
    host, _, port = rest.split("/")[0].rpartition(":")
    if not host or not port.isdigit():
        return rest.split("/")[0], 443 if scheme == "https" else 80
    return host, int(port)


def _disagrees(svc: Mapping[str, Any], user: str, own: bool) -> str:
    """Why the users a Service records are not all ``user`` (the user it would route), or
    "". Such a Service never routes: its traffic could reach another user's workspace."""
    meta = svc.get("metadata") or {}
    labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
    if own and meta.get("name") != service_name(user):
        return f"it is not named {service_name(user)!r}, as {user!r}'s Service would be"
    recorded = annotations.get(GEN3_USER_ANNOTATION)
    if recorded is not None and recorded not in (user, hatchery_user(user)):
        return f"its {GEN3_USER_ANNOTATION} annotation names another user"
    if own and USER_ID_LABEL in labels and labels[USER_ID_LABEL] != user_id(user):
        return f"its {USER_ID_LABEL} label is another user's"
    return ""


def claim_for(svc: Mapping[str, Any], namespace: str, dropin: bool) -> Claim | None:
    claim = _claim_for(svc, namespace, dropin)
    if claim is not None and (why := _disagrees(svc, claim.user, claim.own)):
        log.warning("service %s/%s does not route %r: %s", namespace, claim.service,
                    claim.user, why)
        return None
    return claim


def _claim_for(svc: Mapping[str, Any], namespace: str, dropin: bool) -> Claim | None:
    meta = svc.get("metadata") or {}
    name = str(meta.get("name") or "")
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    ports = (svc.get("spec") or {}).get("ports") or [{}]
    port_name = str(ports[0].get("name") or "")
    if labels.get(MANAGED_BY) == HATCHWAY and annotations.get(USER_ANNOTATION):
        return Claim(user=annotations[USER_ANNOTATION], service=name, own=True, host=name,
                     port=int(ports[0].get("port") or 80), target=name, port_name=port_name,
                     rewrite=annotations.get(REWRITE_ANNOTATION) or "/",
                     tls=_truthy(annotations.get(TLS_ANNOTATION)))
    if not dropin or AMBASSADOR_ANNOTATION not in annotations:
        return None
    mapping = parse_mapping(str(annotations[AMBASSADOR_ANNOTATION]))
    if mapping is None:
        log.warning("service %s/%s: no usable Mapping in its %s annotation", namespace, name,
                    AMBASSADOR_ANNOTATION)
        return None
    host, port = _split_service(mapping["service"], mapping["tls"])
    target = ""
    if m := _CLUSTER_HOST.match(host):
        target = m[1] if m[2] == namespace else ""
    elif "." not in host:
        target = host  # a bare name: a Service in the Mapping's own namespace
    return Claim(user=mapping["user"], service=name, own=False, host=host, port=port,
                 target=target, port_name=port_name, rewrite=mapping["rewrite"],
                 tls=mapping["tls"])


class Router:
    """Keeps the ``k8s:`` routes of a RouteTable equal to what the two reflectors hold."""

    def __init__(self, table: RouteTable, services: Reflector, slices: Reflector, *,
                 namespace: str, route_to: str, cluster_domain: str, dropin: bool) -> None:
        self.table, self.services, self.slices = table, services, slices
        self.namespace, self.route_to, self.dropin = namespace, route_to, dropin
        self.cluster_domain = cluster_domain
        self._claims: dict[str, Claim] = {}  # Service name → claim
        self._by_user: dict[str, set[str]] = {}
        self._slice_target: dict[str, str] = {}  # EndpointSlice name → its Service
        self._slices_of: dict[str, set[str]] = {}
        services.subscribe(self._on_service)
        slices.subscribe(self._on_slice)

    # -- bookkeeping -------------------------------------------------------------------

    def _set_claim(self, name: str, claim: Claim | None) -> set[str]:
        users: set[str] = set()
        old = self._claims.pop(name, None)
        if old is not None:
            self._by_user.get(old.user, set()).discard(name)
            users.add(old.user)
        if claim is not None:
            self._claims[name] = claim
            self._by_user.setdefault(claim.user, set()).add(name)
            users.add(claim.user)
        return users

    def _set_slice(self, name: str, obj: Mapping[str, Any] | None) -> set[str]:
        targets = set()
        old = self._slice_target.pop(name, None)
        if old is not None:
            self._slices_of.get(old, set()).discard(name)
            targets.add(old)
        labels = ((obj or {}).get("metadata") or {}).get("labels") or {}
        if obj is not None and labels.get(SERVICE_NAME_LABEL):
            target = labels[SERVICE_NAME_LABEL]
            self._slice_target[name] = target
            self._slices_of.setdefault(target, set()).add(name)
            targets.add(target)
        return targets

    # -- events ------------------------------------------------------------------------

    def _on_service(self, name: str | None) -> None:
        if name is None:
            self._claims.clear()
            self._by_user.clear()
            for svc_name, svc in self.services.cache.items():
                self._set_claim(svc_name, claim_for(svc, self.namespace, self.dropin))
            self.rebuild()
            return
        changed = self.services.cache.get(name)
        claim = None if changed is None else claim_for(changed, self.namespace, self.dropin)
        self._refresh(self._set_claim(name, claim))

    def _on_slice(self, name: str | None) -> None:
        if name is None:
            self._slice_target.clear()
            self._slices_of.clear()
            for slice_name, obj in self.slices.cache.items():
                self._set_slice(slice_name, obj)
            self.rebuild()
            return
        targets = self._set_slice(name, self.slices.cache.get(name))
        self._refresh({c.user for c in self._claims.values() if c.target in targets})

    # -- routes ------------------------------------------------------------------------

    def _endpoint(self, claim: Claim) -> tuple[str, int] | None:
        """A ready address and port of the claim's target Service, or None."""
        for slice_name in sorted(self._slices_of.get(claim.target, ())):
            obj: Mapping[str, Any] = self.slices.cache.get(slice_name) or {}
            ports = obj.get("ports") or []
            port = next((p for p in ports if p.get("name") == claim.port_name), None)
            if port is None and len(ports) == 1:
                port = ports[0]
            if port is None or not port.get("port"):
                continue
            for endpoint in obj.get("endpoints") or []:
                ready = (endpoint.get("conditions") or {}).get("ready")
                if ready is not False and endpoint.get("addresses"):
                    return str(endpoint["addresses"][0]), int(port["port"])
        return None

    def route(self, claim: Claim) -> Route:
        kind = "service" if claim.own else "ambassador"
        source = f"{SOURCE_PREFIX}{kind}/{self.namespace}/{claim.service}"
        if not claim.target:  # a Mapping pointing outside this namespace: trust it
            return Route(claim.host, claim.port, claim.rewrite, True, claim.tls, source)
        endpoint = self._endpoint(claim)
        if self.route_to == "endpoints" and endpoint is not None:
            return Route(endpoint[0], endpoint[1], claim.rewrite, True, claim.tls, source)
        host = claim.host if "." in claim.host else \
            f"{claim.host}.{self.namespace}.svc.{self.cluster_domain}"
        return Route(host, claim.port, claim.rewrite, endpoint is not None, claim.tls, source)

    def _best(self, user: str) -> Route | None:
        names = self._by_user.get(user) or set()
        claims = sorted((self._claims[n] for n in names), key=lambda c: (not c.own, c.service))
        return self.route(claims[0]) if claims else None

    def _refresh(self, users: set[str]) -> None:
        for user in users:
            route = self._best(user)
            if route is not None:
                self.table.set(user, route)
            elif (old := self.table.get(user)) is not None and old.source.startswith(
                    SOURCE_PREFIX):
                self.table.remove(user)

    def rebuild(self) -> None:
        routes = {user: route for user in list(self._by_user)
                  if (route := self._best(user)) is not None}
        self.table.replace_all(routes, SOURCE_PREFIX)
