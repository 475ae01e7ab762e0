"""The settings tree: one validator, one error shape, and the README's table generated from it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from launcher.errors import ConfigError
from proxy.settings import EnvoySettings, Settings, load_settings, settings_table

from .helpers import HATCHWAY, clean_env

README = Path(__file__).parents[1] / "README.md"


def test_the_readme_settings_table_is_the_generated_one() -> None:
    text = README.read_text(encoding="utf-8")
    found = re.search(r"<!-- settings:begin -->\n(.*?)<!-- settings:end -->", text, re.S)
    assert found, "README.md lacks the settings markers"
    assert found[1] == settings_table(), "run `hatchway settings --doc` and paste it into README"


def test_settings_doc_command_prints_the_table(tmp_path: Path) -> None:
    done = subprocess.run([*HATCHWAY, "settings", "--doc"], cwd=tmp_path, env=clean_env(),
                          capture_output=True, text=True, timeout=20, check=True)
    assert done.stdout == settings_table()


def test_every_setting_is_documented() -> None:
    from launcher.settings_tree import describe

    assert [d.path for d in describe(Settings) if not d.doc] == []


def test_sections_are_typed_objects_not_dicts() -> None:
    settings = load_settings([], environ={}, overrides={"envoy": {"user-header": "x-user"}})
    assert isinstance(settings.envoy, EnvoySettings)
    assert settings.envoy.user_header == "x-user"


def test_nested_sections_merge_across_layers(tmp_path: Path) -> None:
    config = tmp_path / "hatchway.yaml"
    config.write_text("kubernetes:\n  namespace: pods\n  route-to: endpoints\n")
    settings = load_settings([str(config)], environ={},
                             overrides={"kubernetes": {"namespace": "other"}})
    assert (settings.kubernetes.namespace, settings.kubernetes.route_to) == ("other", "endpoints")


def test_static_route_user_names_keep_their_dashes() -> None:
    settings = load_settings([], environ={}, overrides={
        "static_routes": {"a-b": "http://127.0.0.1:1/"}})
    assert settings.static_routes == {"a-b": "http://127.0.0.1:1/"}


@pytest.mark.parametrize(("doc", "field", "expected"), [
    ({"kubernetes": {"retries": -1}}, "kubernetes.retries", "a number >= 0"),
    ({"envoy": {"user_header": "x user"}}, "envoy.user_header", "an HTTP header name"),
    ({"limits": {"max_pending_bytes": 0}}, "limits.max_pending_bytes", "a positive number"),
    ({"local": {"stop_grace_seconds": "5"}}, "local.stop_grace_seconds", "a number"),
    ({"paymodels": {"colour": 1}}, "paymodels.colour", "one of"),
])
def test_every_section_fails_the_same_way_naming_file_and_field(
        tmp_path: Path, doc: dict[str, object], field: str, expected: str) -> None:
    import yaml

    config = tmp_path / "hatchway.yaml"
    config.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError) as err:
        load_settings([str(config)], environ={})
    assert (err.value.source, err.value.field) == (str(config), field)
    assert err.value.expected.startswith(expected)
