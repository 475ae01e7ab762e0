"""How a value goes into Envoy's config so that Envoy reads back exactly that value.

Three of Envoy's readings differ from the plain string hatchway means (issue 21: a user named
``a%2eb`` made Envoy reject that route file and every later one):

- header values it adds (``request_headers_to_add``, ``response_headers_to_add``) are
  substitution format strings: ``%`` starts a command (``%REQ(x)%`` would copy a request
  header), so a literal ``%`` is written ``%%``. Header matchers, prefix rewrites, redirect
  paths, direct-response bodies, cluster and route names are literal (checked with Envoy 1.40);
- its YAML loader resolves plain scalars by YAML 1.1 rules PyYAML's dumper does not share:
  ``y``, ``n`` (and ``Y``, ``N``) are booleans to Envoy, plain strings to PyYAML, so a user
  named ``n`` failed the whole file. Every string that is not plainly an identifier is
  written double-quoted;
- a header value it adds is at most 16 KiB (``HeaderValue.value``, after escaping) and holds
  no NUL, CR or LF: ``header_value_problem`` says so before a value is written, so that one
  user's route is left out rather than every user's file refused.
"""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

HEADER_VALUE_MAX_BYTES = 16_384  # Envoy's HeaderValue.value max_bytes

# Plain scalars every YAML reader takes as that string: starts with a letter or "_", then
# letters, digits, "_", "-", ".", "/" (no ": ", " #", no leading indicator), and not one of
# the words YAML 1.1 resolves to a boolean or null (in any case).
_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_./-]*")
_YAML_WORDS = frozenset({"y", "n", "yes", "no", "true", "false", "on", "off", "null"})


def literal(value: str) -> str:
    """``value`` as a substitution format string that formats to ``value`` itself."""
    return value.replace("%", "%%")


def header(key: str, value: str) -> dict[str, Any]:
    """A header Envoy adds with exactly ``value`` (replacing any the request carries)."""
    return {"header": {"key": key, "value": literal(value)},
            "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}


def header_value_problem(value: str) -> str:
    """Why Envoy would refuse ``value`` as an added header's value ("" when it takes it)."""
    if any(c in value for c in "\0\r\n"):
        return "it contains a line break or NUL"
    size = len(literal(value).encode("utf-8", "surrogatepass"))
    if size > HEADER_VALUE_MAX_BYTES:
        return f"it takes {size} bytes, more than Envoy's {HEADER_VALUE_MAX_BYTES} for a header"
    return ""


class Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    """YAML as Envoy reads it back: no anchors or aliases (each file reads as it means), and
    strings double-quoted unless plainly an identifier (or a block of lines)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if "\n" in value:
        style = "|"  # a block (Lua source, pages): always a string; PyYAML quotes it if it must
    elif _PLAIN.fullmatch(value) is not None and value.lower() not in _YAML_WORDS:
        style = None
    else:
        style = '"'
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


Dumper.add_representer(str, _represent_str)


def dump(document: Any) -> str:
    """``document`` as YAML for Envoy (UTF-8 as is, no line folding inside strings)."""
    return yaml.dump(document, Dumper=Dumper, sort_keys=False, allow_unicode=True,
                     width=1 << 30)


# Characters some readers take as line breaks or refuse raw (NEL, LS, PS, BOM, C1 controls):
# written as escapes, which every JSON (and YAML) reader decodes to the same character.
_ESCAPED = re.compile("[\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff]")


def dump_json(document: Any) -> str:
    """``document`` as one line of JSON, for the files that grow with the users (a route
    table of 10,000 users in half a second rather than PyYAML's half a minute). Non-ASCII
    text stays UTF-8 as is."""
    text = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
    return _ESCAPED.sub(lambda m: f"\\u{ord(m.group()):04x}", text) + "\n"
