"""Go's ``encoding/json`` over Hatchery's ``Container`` struct, so option ids are Hatchery's.

Hatchery reads hatchery.json with ``json.Unmarshal`` into its structs (config.go), then takes
the hex MD5 of ``json.Marshal(container)`` as the option id. The id therefore depends on Go's
view of the entry, not on the text the operator wrote: fields in struct order, zero values
written out, unknown keys dropped, keys matched case-insensitively, maps sorted, nested
Kubernetes containers (``friends``) re-ordered and ``omitempty``-filtered, quantities
canonicalised. This module describes those structs as data (names, types and tags are facts
from hatchery/config.go, hatchery/authz.go and k8s.io/api core/v1 v0.32.1, the version
Hatchery pins) and runs one decode-then-encode pass over them. A value Go would refuse
raises ``GoDecodeError``, because Hatchery refuses to start on it.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Union


class GoDecodeError(ValueError):
    """``json.Unmarshal`` would fail on this value; ``path`` names it, ``expected`` its type."""

    def __init__(self, path: str, expected: str, got: object) -> None:
        self.path, self.expected, self.got = path, expected, got
        super().__init__(f"{path}: expected {expected}, got {got!r}")


# -- type descriptors ----------------------------------------------------------------------

@dataclass(frozen=True)
class Field:
    key: str  # the json tag name ("" with inline: an embedded struct's fields are promoted)
    type: GoType
    omitempty: bool = False
    inline: bool = False


@dataclass(frozen=True)
class Struct:
    name: str
    fields: tuple[Field, ...]


@dataclass(frozen=True)
class Ptr:
    elem: GoType


@dataclass(frozen=True)
class Slice:
    elem: GoType


@dataclass(frozen=True)
class Map:  # map[string]elem
    elem: GoType


@dataclass(frozen=True)
class Int:
    bits: int


# Scalars: "string", "bool", "float32", "float64", "quantity" (resource.Quantity),
# "intorstr" (intstr.IntOrString).
GoType = Union[str, Int, Struct, Ptr, Slice, Map, "Lazy"]


@dataclass(frozen=True)
class Lazy:
    """A named struct referenced before it is defined (AuthzVersion_0_1 holds itself)."""

    name: str


STR, BOOL, I32, I64, INT = "string", "bool", Int(32), Int(64), Int(64)
F32, F64 = "float32", "float64"
QTY, INTSTR = "quantity", "intorstr"


def _s(name: str, *fields: tuple[Any, ...]) -> Struct:
    return Struct(name, tuple(Field(*f) for f in fields))


# k8s.io/api/core/v1 v0.32.1, the types a Container reaches (types.go).
_LOR = _s("LocalObjectReference", ("name", STR, True))
_EXEC = _s("ExecAction", ("command", Slice(STR), True))
_HEADER = _s("HTTPHeader", ("name", STR), ("value", STR))
_HTTPGET = _s("HTTPGetAction", ("path", STR, True), ("port", INTSTR), ("host", STR, True),
              ("scheme", STR, True), ("httpHeaders", Slice(_HEADER), True))
_TCP = _s("TCPSocketAction", ("port", INTSTR), ("host", STR, True))
_GRPC = _s("GRPCAction", ("port", I32), ("service", Ptr(STR)))
_PROBE_HANDLER = _s("ProbeHandler", ("exec", Ptr(_EXEC), True), ("httpGet", Ptr(_HTTPGET), True),
                    ("tcpSocket", Ptr(_TCP), True), ("grpc", Ptr(_GRPC), True))
_PROBE = _s("Probe", ("", _PROBE_HANDLER, False, True),
            ("initialDelaySeconds", I32, True), ("timeoutSeconds", I32, True),
            ("periodSeconds", I32, True), ("successThreshold", I32, True),
            ("failureThreshold", I32, True), ("terminationGracePeriodSeconds", Ptr(I64), True))
_SLEEP = _s("SleepAction", ("seconds", I64))
_LC_HANDLER = _s("LifecycleHandler", ("exec", Ptr(_EXEC), True),
                 ("httpGet", Ptr(_HTTPGET), True), ("tcpSocket", Ptr(_TCP), True),
                 ("sleep", Ptr(_SLEEP), True))
_LIFECYCLE = _s("Lifecycle", ("postStart", Ptr(_LC_HANDLER), True),
                ("preStop", Ptr(_LC_HANDLER), True))
_SECCOMP = _s("SeccompProfile", ("type", STR), ("localhostProfile", Ptr(STR), True))
_APPARMOR = _s("AppArmorProfile", ("type", STR), ("localhostProfile", Ptr(STR), True))
_SECURITY = _s(
    "SecurityContext",
    ("capabilities", Ptr(_s("Capabilities", ("add", Slice(STR), True),
                            ("drop", Slice(STR), True))), True),
    ("privileged", Ptr(BOOL), True),
    ("seLinuxOptions", Ptr(_s("SELinuxOptions", ("user", STR, True), ("role", STR, True),
                              ("type", STR, True), ("level", STR, True))), True),
    ("windowsOptions", Ptr(_s("WindowsSecurityContextOptions",
                              ("gmsaCredentialSpecName", Ptr(STR), True),
                              ("gmsaCredentialSpec", Ptr(STR), True),
                              ("runAsUserName", Ptr(STR), True),
                              ("hostProcess", Ptr(BOOL), True))), True),
    ("runAsUser", Ptr(I64), True), ("runAsGroup", Ptr(I64), True),
    ("runAsNonRoot", Ptr(BOOL), True), ("readOnlyRootFilesystem", Ptr(BOOL), True),
    ("allowPrivilegeEscalation", Ptr(BOOL), True), ("procMount", Ptr(STR), True),
    ("seccompProfile", Ptr(_SECCOMP), True), ("appArmorProfile", Ptr(_APPARMOR), True),
)
_ENV_SOURCE = _s(
    "EnvVarSource",
    ("fieldRef", Ptr(_s("ObjectFieldSelector", ("apiVersion", STR, True),
                        ("fieldPath", STR))), True),
    ("resourceFieldRef", Ptr(_s("ResourceFieldSelector", ("containerName", STR, True),
                                ("resource", STR), ("divisor", QTY, True))), True),
    ("configMapKeyRef", Ptr(_s("ConfigMapKeySelector", ("", _LOR, False, True), ("key", STR),
                               ("optional", Ptr(BOOL), True))), True),
    ("secretKeyRef", Ptr(_s("SecretKeySelector", ("", _LOR, False, True), ("key", STR),
                            ("optional", Ptr(BOOL), True))), True),
)
K8S_CONTAINER = _s(
    "Container",
    ("name", STR), ("image", STR, True), ("command", Slice(STR), True),
    ("args", Slice(STR), True), ("workingDir", STR, True),
    ("ports", Slice(_s("ContainerPort", ("name", STR, True), ("hostPort", I32, True),
                       ("containerPort", I32), ("protocol", STR, True),
                       ("hostIP", STR, True))), True),
    ("envFrom", Slice(_s("EnvFromSource", ("prefix", STR, True),
                         ("configMapRef", Ptr(_s("ConfigMapEnvSource", ("", _LOR, False, True),
                                                 ("optional", Ptr(BOOL), True))), True),
                         ("secretRef", Ptr(_s("SecretEnvSource", ("", _LOR, False, True),
                                              ("optional", Ptr(BOOL), True))), True))), True),
    ("env", Slice(_s("EnvVar", ("name", STR), ("value", STR, True),
                     ("valueFrom", Ptr(_ENV_SOURCE), True))), True),
    ("resources", _s("ResourceRequirements", ("limits", Map(QTY), True),
                     ("requests", Map(QTY), True),
                     ("claims", Slice(_s("ResourceClaim", ("name", STR),
                                         ("request", STR, True))), True)), True),
    ("resizePolicy", Slice(_s("ContainerResizePolicy", ("resourceName", STR),
                              ("restartPolicy", STR))), True),
    ("restartPolicy", Ptr(STR), True),
    ("volumeMounts", Slice(_s("VolumeMount", ("name", STR), ("readOnly", BOOL, True),
                              ("recursiveReadOnly", Ptr(STR), True), ("mountPath", STR),
                              ("subPath", STR, True), ("mountPropagation", Ptr(STR), True),
                              ("subPathExpr", STR, True))), True),
    ("volumeDevices", Slice(_s("VolumeDevice", ("name", STR), ("devicePath", STR))), True),
    ("livenessProbe", Ptr(_PROBE), True), ("readinessProbe", Ptr(_PROBE), True),
    ("startupProbe", Ptr(_PROBE), True), ("lifecycle", Ptr(_LIFECYCLE), True),
    ("terminationMessagePath", STR, True), ("terminationMessagePolicy", STR, True),
    ("imagePullPolicy", STR, True), ("securityContext", Ptr(_SECURITY), True),
    ("stdin", BOOL, True), ("stdinOnce", BOOL, True), ("tty", BOOL, True),
)

# hatchery/authz.go. AuthzConfig has its own UnmarshalJSON (see _authz) and no MarshalJSON,
# so its untagged AuthzVersion_0_1 field marshals under its Go name.
AUTHZ_RULE = _s("AuthzVersion_0_1", ("and", Slice(Lazy("AuthzVersion_0_1"))),
                ("or", Slice(Lazy("AuthzVersion_0_1"))), ("resource_paths", Slice(STR)),
                ("pay_models", Slice(STR)))
AUTHZ = "authz"  # marker: decoded by _authz

# hatchery/config.go
NEXTFLOW = _s("NextflowConfig", ("enabled", BOOL), ("job-image-whitelist", Slice(STR)),
              ("s3-bucket-whitelist", Slice(STR)), ("compute-environment-type", STR),
              ("instance-ami", STR), ("instance-ami-builder-arn", STR), ("instance-type", STR),
              ("instance-min-vcpus", I32), ("instance-max-vcpus", I32))
LICENSE = _s("LicenseInfo", ("enabled", BOOL), ("license-type", STR), ("max-license-ids", INT),
             ("g3auto-name", STR), ("g3auto-key", STR), ("file-path", STR),
             ("workspace-flavor", STR))
CONTAINER = _s(
    "Container",
    ("name", STR), ("gpu", BOOL), ("cpu-limit", STR), ("memory-limit", STR), ("image", STR),
    ("pull_policy", STR), ("env", Map(STR)), ("target-port", I32), ("args", Slice(STR)),
    ("command", Slice(STR)), ("path-rewrite", STR), ("use-tls", STR), ("ready-probe", STR),
    ("lifecycle-pre-stop", Slice(STR)), ("lifecycle-post-start", Slice(STR)),
    ("user-uid", I64), ("group-uid", I64), ("fs-gid", I64), ("user-volume-location", STR),
    ("gen3-volume-location", STR), ("use-shared-memory", STR),
    ("friends", Slice(K8S_CONTAINER)), ("nextflow", NEXTFLOW), ("license", LICENSE),
    ("authz", AUTHZ),
)
_NAMED = {"AuthzVersion_0_1": AUTHZ_RULE}

# The rest of hatchery.json (HatcheryConfig and its parts), decoded only to check it as
# Hatchery's json.Unmarshal does: a type Go refuses stops Hatchery, and so hatchway.
PAY_MODEL = _s("PayModel", ("bmh_workspace_id", STR), ("workspace_type", STR), ("user_id", STR),
               ("account_id", STR), ("request_status", STR), ("local", BOOL), ("region", STR),
               ("ecs", BOOL), ("subnet", INT), ("hard-limit", F32), ("soft-limit", F32),
               ("total-usage", F32), ("current_pay_model", BOOL))
SIDECAR = _s("SidecarContainer", ("cpu-limit", STR), ("memory-limit", STR), ("image", STR),
             ("env", Map(STR)), ("args", Slice(STR)), ("command", Slice(STR)),
             ("lifecycle-pre-stop", Slice(STR)))
APP_CONFIG = _s("AppConfigInfo", ("type", STR), ("Path", STR), ("Name", STR))
HATCHERY_CONFIG = _s(
    "HatcheryConfig",
    ("user-namespace", STR), ("default-pay-model", PAY_MODEL), ("skip-node-selector", BOOL),
    ("use-internal-services-url", BOOL), ("pay-models", Slice(PAY_MODEL)),
    ("pay-models-dynamodb-table", STR), ("pay-models-dynamodb-arn", STR),
    ("license-user-maps-dynamodb-table", STR), ("license-user-maps-global-secondary-index", STR),
    ("license", LICENSE), ("sub-dir", STR), ("containers", Slice(CONTAINER)),
    ("user-volume-size", STR), ("sidecar", SIDECAR), ("more-configs", Slice(APP_CONFIG)),
    ("prisma", _s("PrismaConfig", ("console-address", STR), ("console-version", STR),
                  ("enable", BOOL))),
    ("nextflow-global", _s("NextflowGlobalConfig", ("s3-objects-expiration-days", INT),
                           ("sample-config-public-image", STR),
                           ("imagebuilder-reader-role-arn", STR))),
    ("pricing", _s("Pricing", ("cpu", F64), ("memory", F64))),
)


# -- encoding ------------------------------------------------------------------------------

def go_string(s: str) -> str:
    """A JSON string as Go's encoder writes it: HTML-safe (<, > and & escaped), U+2028/9
    escaped, and a lone surrogate (Python's stand-in for invalid UTF-8) as U+FFFD. Control
    characters follow Go 1.22+ (\\b and \\f short forms), which Hatchery builds with."""
    if any("\ud800" <= c <= "\udfff" for c in s):
        s = "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in s)
    out = json.dumps(s, ensure_ascii=False)
    return (out.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def float32(x: float) -> float:
    """``float32(x)``: the nearest single-precision value."""
    return float(struct.unpack("f", struct.pack("f", x))[0])


def go_float32(x: float) -> str:
    """``strconv.FormatFloat(x, 'f' or 'e', -1, 32)`` as encoding/json chooses: the shortest
    decimal that reads back as the same float32, exponent form below 1e-6 or from 1e21."""
    f32 = float32(x)
    if f32 == 0:
        return "0" if math.copysign(1, f32) > 0 else "-0"
    for prec in range(1, 10):
        text = f"{f32:.{prec}g}"
        if float32(float(text)) == f32:
            break
    d = Decimal(text)
    if 1e-6 <= abs(f32) < 1e21:
        out = format(d, "f")
        return out.rstrip("0").rstrip(".") if "." in out else out
    mant, _, exp = format(d.normalize(), "e").partition("e")
    mant = mant.rstrip("0").rstrip(".") if "." in mant else mant
    e = int(exp)  # strconv writes two exponent digits; encoding/json trims "e-07" to "e-7"
    return f"{mant}e-{-e}" if e < 0 else f"{mant}e+{e:02d}"


class _Enc:
    """One decode-then-encode pass; ``path`` names the value for GoDecodeError."""

    def value(self, t: GoType, v: Any, path: str) -> str:
        if isinstance(t, Lazy):
            t = _NAMED[t.name]
        if t == STR:
            if v is None:
                return '""'
            if not isinstance(v, str):
                raise GoDecodeError(path, "a string", v)
            return go_string(v)
        if t == BOOL:
            if v is None:
                return "false"
            if not isinstance(v, bool):
                raise GoDecodeError(path, "a boolean", v)
            return "true" if v else "false"
        if isinstance(t, Int):
            return str(self.integer(t, v, path))
        if t in (F32, F64):
            if v is None:
                v = 0
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                raise GoDecodeError(path, "a number", v)
            return go_float32(v) if t == F32 else json.dumps(float(v))  # F64: checked only
        if t == QTY:
            return go_string(canonical_quantity(v, path))
        if t == INTSTR:
            if isinstance(v, str):
                return go_string(v)
            return str(self.integer(I32, v, path))
        if t == AUTHZ:
            return self.authz(v, path)
        if isinstance(t, Ptr):
            return "null" if v is None else self.value(t.elem, v, path)
        if isinstance(t, Slice):
            if v is None:
                return "null"
            if not isinstance(v, list):
                raise GoDecodeError(path, "a list", v)
            return "[" + ",".join(self.value(t.elem, x, f"{path}[{i}]")
                                  for i, x in enumerate(v)) + "]"
        if isinstance(t, Map):
            if v is None:
                return "null"
            if not isinstance(v, Mapping):
                raise GoDecodeError(path, "an object", v)
            return "{" + ",".join(f"{go_string(k)}:{self.value(t.elem, v[k], f'{path}.{k}')}"
                                  for k in sorted(v)) + "}"
        if isinstance(t, Struct):
            return self.struct(t, v, path)
        raise TypeError(t)

    @staticmethod
    def integer(t: Int, v: Any, path: str) -> int:
        if v is None:
            return 0
        if not isinstance(v, int) or isinstance(v, bool):
            raise GoDecodeError(path, f"an integer (int{t.bits})", v)
        if not -(1 << (t.bits - 1)) <= v < (1 << (t.bits - 1)):
            raise GoDecodeError(path, f"an integer within int{t.bits}", v)
        return v

    def struct(self, t: Struct, v: Any, path: str) -> str:
        if v is None:
            v = {}
        if not isinstance(v, Mapping):
            raise GoDecodeError(path, "an object", v)
        parts: list[str] = []
        for f, raw in struct_fields(t, v):
            where = f"{path}.{f.key}" if path else f.key
            if f.omitempty and _empty(f.type, raw):
                continue
            parts.append(f"{go_string(f.key)}:{self.value(f.type, raw, where)}")
        return "{" + ",".join(parts) + "}"

    def authz(self, v: Any, path: str) -> str:
        version, rule = authz_parts(v, path)
        body = self.struct(AUTHZ_RULE, rule, path)
        return '{"version":' + go_float32(version) + ',"AuthzVersion_0_1":' + body + "}"


def _flat(t: Struct) -> list[Field]:
    """The struct's JSON fields in order, embedded (inline) structs' fields promoted."""
    out: list[Field] = []
    for f in t.fields:
        if f.inline:
            assert isinstance(f.type, Struct)
            out.extend(_flat(f.type))
        else:
            out.append(f)
    return out


def struct_fields(t: Struct, v: Mapping[str, Any]) -> list[tuple[Field, Any]]:
    """Each field with the JSON value Go would decode into it: the key spelled exactly, else
    the last key equal to it ignoring case (Go's rule); a later duplicate key wins."""
    fields = _flat(t)
    chosen: dict[str, Any] = {}
    for key, raw in v.items():
        exact = next((f for f in fields if f.key == key), None)
        f = exact or next((f for f in fields if _fold(f.key) == _fold(key)), None)
        if f is not None:
            chosen[f.key] = raw
    return [(f, chosen.get(f.key)) for f in fields]


def go_view(t: Struct, doc: Mapping[str, Any]) -> dict[str, Any]:
    """``doc`` with each key Go matches to a field of ``t`` spelled as the field's tag (so
    ``"Name"`` reads as ``"name"``, the later of two spellings winning); other keys kept."""
    fields = _flat(t)
    out: dict[str, Any] = {}
    for key, raw in doc.items():
        f = next((f for f in fields if f.key == key), None) or next(
            (f for f in fields if _fold(f.key) == _fold(key)), None)
        out[f.key if f is not None else key] = raw
    return out


def _fold(s: str) -> str:
    # Go folds with simple Unicode case folding; K (U+212A) and ſ (U+017F) fold to k and s.
    return s.replace("\u212a", "k").replace("\u017f", "s").lower()


def _empty(t: GoType, v: Any) -> bool:
    """Go's ``omitempty``: false, 0, "", nil pointers and empty slices/maps; structs (and so
    Quantity and IntOrString) never count as empty."""
    if isinstance(t, (Struct, Lazy)) or t in (QTY, INTSTR, AUTHZ):
        return False
    if v is None:
        return True
    if isinstance(t, Ptr):
        return False
    if t == BOOL:
        return v is False
    if isinstance(t, Int) or t in (F32, F64):
        return v == 0 and not isinstance(v, bool)
    if t == STR:
        return v == ""
    return isinstance(v, (list, dict)) and not v


def authz_parts(v: Any, path: str) -> tuple[float, Any]:
    """(float32 version, the object to decode as AuthzVersion_0_1 or None) as AuthzConfig's
    UnmarshalJSON does: a missing version is an error; only version 0.1 reads the rules."""
    if v is None:
        return 0.0, None  # field absent: version 0, "no authz"
    if not isinstance(v, Mapping):
        raise GoDecodeError(path, "an object", v)
    version = v.get("version")
    if version is None:
        raise GoDecodeError(f"{path}.version", "a number (authz blocks need a version)", None)
    if not isinstance(version, (int, float)) or isinstance(version, bool):
        raise GoDecodeError(f"{path}.version", "a number", version)
    f32 = float32(float(version))
    return f32, (v if f32 == float32(0.1) else None)


# -- resource.Quantity ---------------------------------------------------------------------

_QTY = re.compile(r"^([+-]?)(\d*)(?:\.(\d*))?(?:(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])|[eE]([+-]?\d+))?$")
_BIN = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DEC = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_DEC_SUFFIX = {e: s for s, e in _DEC.items()}


def quantity_amount(v: Any, path: str) -> Decimal:
    """The exact value of a ``resource.Quantity`` (ParseQuantity: sub-nano precision rounded
    up to the nano, as Kubernetes rounds it). Raises GoDecodeError."""
    return _parse_quantity(v, path)[1]


def _parse_quantity(v: Any, path: str) -> tuple[str, Decimal]:
    """(format, amount): "bin", "exp" or "dec", as ParseQuantity records the format."""
    if v is None:
        return "dec", Decimal(0)
    text = v.strip() if isinstance(v, str) else (
        repr(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None)
    m = _QTY.match(text) if text is not None else None
    if m is None or not (m.group(2) or m.group(3)):
        raise GoDecodeError(path, "a Kubernetes quantity", v)
    sign, whole, frac, suffix, exp = m.groups()
    try:
        number = Decimal(f"{whole or '0'}.{frac or '0'}")
    except InvalidOperation:
        raise GoDecodeError(path, "a Kubernetes quantity", v) from None
    if suffix in _BIN:
        fmt, amount = "bin", number * (1 << _BIN[suffix])
    elif exp is not None:
        fmt, amount = "exp", number.scaleb(int(exp))
    else:
        fmt, amount = "dec", number.scaleb(_DEC[suffix or ""])
    amount = (amount * 10**9).to_integral_value(rounding="ROUND_CEILING") / 10**9
    return fmt, -amount if sign == "-" else amount


def canonical_quantity(v: Any, path: str) -> str:
    """``resource.Quantity`` as Kubernetes marshals it (ParseQuantity, then CanonicalizeBytes):
    the value is kept, its form normalised ("1024Mi" → "1Gi", "0.5" → "500m", "1000" → "1k").
    Sub-nano precision, which Kubernetes rounds up, is rounded up to the nano here too."""
    if v is None:
        return "0"
    fmt, amount = _parse_quantity(v, path)
    if amount == 0:
        return "0"
    if fmt == "bin" and (abs(amount) < 1024 or amount != amount.to_integral_value()):
        fmt = "dec"
    if fmt == "bin":
        n, e = int(amount), 0
        while n % 1024 == 0 and e < 6:
            n, e = n // 1024, e + 1
        return f"{n}{['', 'Ki', 'Mi', 'Gi', 'Ti', 'Pi', 'Ei'][e]}"
    sign_, digits, exponent = amount.normalize().as_tuple()
    mant = int("".join(map(str, digits))) * (-1 if sign_ else 1)
    assert isinstance(exponent, int)
    shift = exponent % 3
    mant, exponent = mant * 10**shift, exponent - shift
    if fmt == "dec" and exponent in _DEC_SUFFIX:
        return f"{mant}{_DEC_SUFFIX[exponent]}"
    return f"{mant}e{exponent}" if exponent else str(mant)


# -- the API -------------------------------------------------------------------------------

def marshal(t: GoType, value: Any) -> str:
    """``json.Marshal`` of ``value`` decoded into Go type ``t``. Raises GoDecodeError."""
    return _Enc().value(t, value, "")


def marshal_container(entry: Mapping[str, Any]) -> str:
    """Go's ``json.Marshal(container)`` for one hatchery.json container entry."""
    return _Enc().struct(CONTAINER, entry, "")


def option_id(entry: Mapping[str, Any]) -> str:
    """Hatchery's option id: hex MD5 of the marshalled Container."""
    return hashlib.md5(marshal_container(entry).encode("utf-8")).hexdigest()
