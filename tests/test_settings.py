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


@pytest.mark.parametrize(("section", "old", "new"), [
    ("envoy", "idle_timeout_s", "idle_timeout_seconds"),
    ("envoy", "activity_poll_s", "activity_poll_seconds"),
    ("kubernetes", "request_timeout", "request_timeout_seconds"),
    ("kubernetes", "connect_timeout", "connect_timeout_seconds"),
    ("kubernetes", "retry_backoff", "retry_backoff_seconds"),
    ("kubernetes", "backoff_max", "backoff_max_seconds"),
])
def test_a_time_settings_former_name_still_works_with_a_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, section: str, old: str,
        new: str) -> None:
    config = tmp_path / "hatchway.yaml"
    config.write_text(f"{section}:\n  {old.replace('_', '-')}: 7\n")
    settings = load_settings([str(config)], environ={})
    assert getattr(getattr(settings, section), new) == 7.0
    assert f"{config}: setting {section}.{old.replace('_', '-')} is now called " \
        f"{section}.{new}" in caplog.text


def test_time_settings_are_named_in_seconds() -> None:
    from launcher.settings_tree import describe

    timed = [d.path for d in describe(Settings)
             if re.search(r"(timeout|interval|backoff|grace|_s$|delay|poll)", d.path)]
    assert timed and all(p.endswith("_seconds") for p in timed), timed


def test_log_level_comes_from_the_environment_and_a_bad_one_is_named() -> None:
    assert load_settings([], environ={"HATCHWAY_LOG_LEVEL": "debug"}).log_level == "debug"
    with pytest.raises(ConfigError) as err:
        load_settings([], environ={"HATCHWAY_LOG_LEVEL": "loud"})
    assert err.value.field == "log_level"


def test_gen3_endpoint_is_read_from_hatcherys_variable_into_the_tree() -> None:
    from proxy.settings import kube_settings

    assert load_settings([], environ={}).gen3_endpoint is None  # unset, as Go's LookupEnv
    settings = load_settings([], environ={"GEN3_ENDPOINT": "commons.example.org"})
    assert settings.gen3_endpoint == "commons.example.org"
    assert kube_settings(settings).commons_endpoint == "commons.example.org"


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
