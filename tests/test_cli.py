"""The ``hatchway`` command as an operator meets it: bad config files stop it with exit status 2
and one line naming the file and the field (never a traceback); ``hatchway token`` prints a
session the server accepts; ``hatchway serve`` prints the URL to open."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jwt
import pytest

from .helpers import DEMO, free_port, get, run, serving, workers_of

# -- bad config ------------------------------------------------------------------------------

BAD_CONFIGS: list[tuple[str, str, Any, str]] = [
    ("unknown field", "hatchway.yaml", "colour: blue\n", "field 'colour'"),
    ("wrong type", "hatchway.yaml", 'port: "abc"\n', "field 'port': expected an integer"),
    ("bad choice", "hatchway.yaml", "mode: foo\n", "field 'mode': expected builtin or envoy"),
    ("nested unknown field", "hatchway.yaml", "sessions:\n  audince: gen3\n",
     "field 'sessions.audince'"),
    ("invalid YAML", "hatchway.yaml", "port: [8080\nmode: builtin\n", "(line 2, column 5)"),
    ("invalid JSON", "hatchery.json", '{"containers": [', "valid JSON"),
    ("target-port as a string", "hatchery.json",
     {"containers": [{"name": "J", "target-port": "8888"}]},
     "field 'containers[0].target-port': expected an integer"),
    ("container without a name", "hatchery.json",
     {"containers": [{"image": "jupyter"}]}, "field 'containers[0].name'"),
    ("authz without a version", "hatchery.json",
     {"containers": [{"name": "J", "authz": {"resource_paths": ["/w"]}}]},
     "field 'containers[0].authz.version': expected a number"),
]


@pytest.mark.parametrize(("filename", "content", "says"),
                         [c[1:] for c in BAD_CONFIGS], ids=[c[0] for c in BAD_CONFIGS])
def test_a_bad_config_exits_2_naming_the_file_and_field(
        tmp_path: Path, filename: str, content: Any, says: str) -> None:
    path = tmp_path / filename
    path.write_text(content if isinstance(content, str) else json.dumps(content),
                    encoding="utf-8")
    done = run("serve", "--config", str(path), "--port", str(free_port()),
               "--state-dir", str(tmp_path / "state"), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"hatchway: configuration error: {path}: ") and says in line, line
    assert done.stdout == ""  # no banner: nothing was served


def test_a_missing_config_file_exits_2_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.yaml"
    done = run("serve", "--config", str(missing), "--port", str(free_port()), cwd=tmp_path)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    [line] = done.stderr.strip().splitlines()
    assert str(missing) in line


def test_a_bad_port_option_exits_2_without_a_traceback(tmp_path: Path) -> None:
    done = run("serve", "--port", "abc", cwd=tmp_path)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and "--port" in done.stderr


# -- token -----------------------------------------------------------------------------------

def test_token_prints_one_jwt_alone_on_stdout(tmp_path: Path) -> None:
    done = run("token", "alice", "--state-dir", str(tmp_path / "state"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    [token] = done.stdout.splitlines()
    assert len(token.split(".")) == 3
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["context"]["user"]["name"] == "alice" and claims["pur"] == "access"


def test_the_server_accepts_a_token_from_the_same_state_dir(tmp_path: Path) -> None:
    state = str(tmp_path / "state")
    token = run("token", "alice", "--state-dir", state, cwd=tmp_path).stdout.strip()
    with serving(tmp_path, "--state-dir", state) as (url, _):
        status, body, _ = get(url + "status", Authorization=f"Bearer {token}")
        assert status == 200 and json.loads(body)["status"] == "Not Found"
        status, _, _ = get(url + "status", Authorization=f"Bearer {token}x")
        assert status == 401


def test_a_token_from_another_state_dir_is_refused(tmp_path: Path) -> None:
    token = run("token", "alice", "--state-dir", str(tmp_path / "other"),
                cwd=tmp_path).stdout.strip()
    with serving(tmp_path, "--state-dir", str(tmp_path / "state")) as (url, _):
        status, _, _ = get(url + "status", Authorization=f"Bearer {token}")
        assert status == 401


# -- serve -----------------------------------------------------------------------------------

def test_serve_prints_the_url_of_the_launch_page(tmp_path: Path) -> None:
    with serving(tmp_path, "--state-dir", str(tmp_path / "state")) as (url, _):
        assert url.endswith("/lw-workspace/")
        status, _, headers = get(url, Accept="text/html")
        assert status == 302 and "/lw-workspace/login" in headers["Location"]
        banner = (tmp_path / "stdout.txt").read_text()
        assert "hatchway token alice" in banner  # how to get a session for scripts


def test_serve_accepts_hatchery_json_with_one_warning_for_fields_it_ignores(
        tmp_path: Path) -> None:
    hatchery = tmp_path / "hatchery.json"
    hatchery.write_text(json.dumps({
        "user-namespace": "jupyter-pods", "sub-dir": "/lw-workspace",
        "sidecar": {"image": "quay.io/cdis/gen3fuse-sidecar:master", "cpu-limit": "0.1"},
        "containers": [{**DEMO, "image": "quay.io/cdis/jupyter:latest", "target-port": 8888,
                        "user-uid": 1000, "pull_policy": "Always"}],
    }), encoding="utf-8")
    with serving(tmp_path, "--config", str(hatchery),
                 "--state-dir", str(tmp_path / "state")) as (_, err):
        warnings = [line for line in err.read_text().splitlines() if "WARNING" in line]
    assert len(warnings) == 1, warnings
    assert str(hatchery) in warnings[0] and "image" in warnings[0]


def test_serve_runs_in_a_fresh_directory_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    with serving(tmp_path) as (url, err):
        assert get(url + "_version")[0] == 200
    assert "Traceback" not in err.read_text()
    assert (tmp_path / ".hatchway").is_dir()  # the default state dir, relative to where it runs


# -- dev sessions never face a network by accident ------------------------------------------

@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "gateway.example.org"])
def test_dev_sessions_on_a_non_loopback_address_exit_2_in_one_line(
        tmp_path: Path, host: str) -> None:
    done = run("serve", "--host", host, "--port", str(free_port()),
               "--state-dir", str(tmp_path / "state"), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("hatchway: configuration error: settings: field 'host'")
    assert "--insecure-dev-sessions-on-network" in line and repr(host) in line
    assert done.stdout == ""


def test_dev_sessions_behind_an_envoy_listening_on_all_addresses_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "hatchway.json"
    config.write_text(json.dumps({"mode": "envoy", "envoy": {"listen_host": "0.0.0.0"}}))
    for command in ("serve", "envoy-config"):
        done = run(command, "--config", str(config), "--state-dir", str(tmp_path / "state"),
                   cwd=tmp_path)
        assert done.returncode == 2, done.stderr
        [line] = done.stderr.strip().splitlines()
        assert "field 'envoy.listen_host'" in line, line


def test_the_insecure_flag_lets_dev_sessions_listen_on_all_addresses(tmp_path: Path) -> None:
    with serving(tmp_path, "--host", "0.0.0.0", "--insecure-dev-sessions-on-network",
                 "--state-dir", str(tmp_path / "state")) as (url, _):
        assert get(url + "_version")[0] == 200


def test_the_insecure_setting_lets_dev_sessions_listen_on_all_addresses(tmp_path: Path) -> None:
    config = tmp_path / "hatchway.yaml"
    config.write_text("host: 0.0.0.0\nsessions:\n  allow_insecure_dev_on_network: true\n")
    with serving(tmp_path, "--config", str(config),
                 "--state-dir", str(tmp_path / "state")) as (url, _):
        assert get(url + "_version")[0] == 200


def test_fence_sessions_may_listen_on_all_addresses(tmp_path: Path) -> None:
    config = tmp_path / "hatchway.yaml"
    config.write_text("host: 0.0.0.0\nsessions:\n  mode: jwks\n"
                      "  jwks_url: http://127.0.0.1:9/.well-known/jwks\n")
    with serving(tmp_path, "--config", str(config),
                 "--state-dir", str(tmp_path / "state")) as (url, _):
        assert get(url + "_version")[0] == 200


DEPLOY = Path(__file__).parents[1] / "deploy"


@pytest.mark.parametrize("example", sorted(
    str(p.relative_to(DEPLOY)) for p in DEPLOY.rglob("hatchway*.yaml")
    if p.parent.name != "kind"))
def test_every_deploy_example_uses_fence_sessions(example: str) -> None:
    import yaml

    sessions = yaml.safe_load((DEPLOY / example).read_text()).get("sessions") or {}
    assert sessions.get("mode") == "jwks" and sessions.get("jwks_url"), example


def test_the_kind_values_say_their_dev_sessions_are_insecure() -> None:
    """kind's e2e script needs `hatchway token`; it reaches the pods by port-forward only."""
    import yaml

    values = yaml.safe_load((DEPLOY / "kind" / "values.yaml").read_text())
    assert values["settings"]["sessions"] == {"mode": "dev", "allow_insecure_dev_on_network": True}


# -- workers ---------------------------------------------------------------------------------

def test_workers_with_a_local_backend_that_launches_exit_2(tmp_path: Path) -> None:
    """Local workspaces live in the one process that launched them: no second worker."""
    done = run("serve", "--workers", "2", "--port", str(free_port()),
               "--state-dir", str(tmp_path / "state"), cwd=tmp_path)
    assert done.returncode == 2 and "field 'workers'" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_two_workers_share_the_port_when_only_static_routes_are_served(tmp_path: Path) -> None:
    """With nothing to launch every worker has the same route table (SO_REUSEPORT)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Hello(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self.send_response(200)
            self.send_header("Content-Length", "5")
            self.end_headers()
            self.wfile.write(b"hello")

        def log_message(self, *args: object) -> None:
            pass

    upstream = ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    hatchery = tmp_path / "hatchery.json"
    hatchery.write_text(json.dumps({"containers": []}), encoding="utf-8")
    config = tmp_path / "hatchway.json"
    config.write_text(json.dumps({
        "hatchery_config": str(hatchery), "workers": 2,
        "static_routes": {"alice": f"http://127.0.0.1:{upstream.server_port}/"}}))
    state = str(tmp_path / "state")
    token = run("token", "alice", "--state-dir", state, cwd=tmp_path).stdout.strip()
    try:
        with serving(tmp_path, "--config", str(config), "--state-dir", state) as (url, _):
            for _ in range(20):
                status, body, _ = get(url + "proxy/x", Authorization=f"Bearer {token}")
                assert (status, body) == (200, "hello")
            assert len(workers_of(str(config))) == 2
    finally:
        upstream.shutdown()


def test_envoy_mode_banner_names_the_port_users_open() -> None:
    from proxy.serve.cli import _banner
    from proxy.settings import load_settings

    settings = load_settings([], environ={}, overrides={
        "mode": "envoy", "port": 8080, "envoy": {"listen_host": "0.0.0.0", "listen_port": 8000}})
    banner = _banner(settings)
    assert "Open http://127.0.0.1:8000/lw-workspace/ in a browser." in banner
    assert "relayed by Envoy at http://127.0.0.1:8000/lw-workspace/proxy/" in banner
    assert "hatchway itself answers on http://127.0.0.1:8080" in banner
