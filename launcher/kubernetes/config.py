"""The ``kubernetes:`` section of hatchway's settings: declared, documented and checked in
:mod:`launcher.settings` (one validator for the whole tree); re-exported here for the
backend's modules."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from launcher.settings import DEFAULT_NAMESPACE, KubeSettings
from launcher.settings_tree import build

__all__ = ["DEFAULT_NAMESPACE", "KubeSettings", "parse_kube_settings"]


def parse_kube_settings(raw: Mapping[str, Any], source: str = "settings") -> KubeSettings:
    """``kubernetes:`` alone (tests, tools); ``load_settings`` checks it as part of the tree."""
    cfg: KubeSettings = build(KubeSettings, raw, source=source, prefix="kubernetes.")
    return cfg
