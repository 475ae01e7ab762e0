"""The ``hatchway`` command: ``serve`` (the gateway), ``token`` (a dev session for scripts)."""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import json
import logging
import os
import sys
from typing import Any

from launcher.errors import ConfigError

from .. import __version__
from ..settings import Settings, load_settings, settings_table

EXIT_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hatchway", description="Workspace gateway for Gen3-style data commons.")
    parser.add_argument("--version", action="version", version=f"hatchway {__version__}")
    sub = parser.add_subparsers(dest="command")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", "-c", action="append", default=[], metavar="FILE",
                       help="hatchway settings (YAML/JSON) or a Hatchery hatchery.json; "
                            "repeatable, later files win")
        p.add_argument("--state-dir", help="where the dev signing key and logs live "
                                           "(default .hatchway, env HATCHWAY_STATE_DIR)")

    serve = sub.add_parser("serve", help="run the gateway (default: local workspaces, "
                                         "dev sessions, http://127.0.0.1:8080)")
    common(serve)
    serve.add_argument("--host", help="listen address (env HATCHWAY_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (env HATCHWAY_PORT, default 8080)")
    serve.add_argument("--workers", type=int, help="processes sharing the port (SO_REUSEPORT)")
    serve.add_argument("--log-level", help="DEBUG, INFO, WARNING or ERROR (env "
                                           "HATCHWAY_LOG_LEVEL, default INFO)")
    serve.add_argument("--insecure-dev-sessions-on-network", action="store_true",
                       help="allow dev sessions (anyone may sign in as anyone) on a "
                            "non-loopback address; never on a network you do not trust")

    token = sub.add_parser("token", help="print a dev session token for USER on stdout")
    common(token)
    token.add_argument("user")
    token.add_argument("--ttl", type=int, default=1200, help="lifetime in seconds (default 1200)")

    envoy = sub.add_parser("envoy-config", help="write an Envoy bootstrap for Envoy mode")
    common(envoy)
    envoy.add_argument("--output", "-o", default="-", help="bootstrap file (default stdout)")

    show = sub.add_parser("settings", help="check the settings and print them as JSON, or "
                                           "(--doc) the table of every setting")
    common(show)
    show.add_argument("--doc", action="store_true",
                      help="print every setting with its type, default and doc (markdown)")
    return parser


def _settings(args: argparse.Namespace, **overrides: Any) -> Settings:
    return load_settings(args.config, overrides={"state_dir": args.state_dir, **overrides})


def _self_command() -> str:
    """How the user can run this same hatchway again (``.venv/bin/hatchway`` after make)."""
    argv0 = sys.argv[0] if sys.argv and sys.argv[0].endswith("hatchway") else "hatchway"
    rel = os.path.relpath(argv0) if os.path.isabs(argv0) else argv0
    return rel if "/" in rel and not rel.startswith("..") else "hatchway"


def _banner(settings: Settings) -> str:
    def shown(host: str) -> str:
        return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host

    base = f"http://{shown(settings.host)}:{settings.port}"
    opened = base
    envoy = settings.envoy
    if settings.mode == "envoy" and envoy.api_passthrough:
        # Envoy carries users' traffic: the port they open is Envoy's, not hatchway's
        opened = f"http://{shown(envoy.listen_host)}:{envoy.listen_port}"
    lines = [f"hatchway {__version__}: {settings.backend} workspaces, {settings.mode} proxy, "
             f"{'dev' if settings.dev_sessions else 'Fence (JWKS)'} sessions",
             f"  Open {opened}{settings.prefix.rstrip('/')}/ in a browser."]
    if settings.mode == "envoy":
        lines.append(f"  Workspaces are relayed by Envoy at http://{shown(envoy.listen_host)}:"
                     f"{envoy.listen_port}{settings.proxy_prefix}; hatchway itself answers "
                     f"on {base} (API, Envoy's checks).")
    if settings.dev_sessions:
        lines += [f"  Sign in at {opened}{settings.prefix.rstrip('/')}/login with any user name "
                  "(development mode only),",
                  f"  or get a token for scripts:  {_self_command()} token alice"
                  + (f" --state-dir {settings.state_dir}" if settings.state_dir != ".hatchway"
                     else "")
                  + "   (send it as the access_token cookie or Authorization: Bearer)."]
    lines.append("  Stop with Ctrl-C.")
    return "\n".join(lines)


def _warn_unsupported(settings: Settings) -> None:
    """One start-up warning naming every Hatchery feature the config uses that hatchway does not
    provide, and (local backend) the fields local workspaces ignore: never a crash."""
    assert settings.hatchery is not None
    from launcher.costs.notes import unsupported as cost_notes

    notes = list(settings.hatchery.unsupported)
    notes += cost_notes(settings.hatchery, settings.backend)
    if settings.hatchery.unused_fields:
        notes.append("unknown fields (Hatchery ignores them too): "
                     + ", ".join(settings.hatchery.unused_fields))
    if settings.backend == "local":
        from launcher.local import ignored_fields

        ignored = ignored_fields(settings.hatchery)
        if ignored:
            notes.append(f"{len(ignored)} field(s) mean nothing to the local backend: "
                         + ", ".join(ignored[:8]) + (", …" if len(ignored) > 8 else ""))
    if notes:
        logging.getLogger("hatchway").warning(
            "%s: not supported by hatchway (yet): %s", settings.hatchery.source,
            "; ".join(notes))


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a wildcard ("", 0.0.0.0, ::) or a name: it may face a network


def _refuse_dev_sessions_on_network(settings: Settings) -> None:
    """Dev sessions let anyone sign in as anyone: never on an address a network reaches,
    unless the operator says so in words that say it is insecure."""
    if not settings.dev_sessions or settings.sessions.allow_insecure_dev_on_network:
        return
    binds = [("host", settings.host)]
    if settings.mode == "envoy":
        binds.append(("envoy.listen_host", settings.envoy.listen_host))
    for field, host in binds:
        if not _is_loopback(host):
            raise ConfigError(
                "settings", field, "a loopback address with dev sessions (anyone reaching it "
                "could sign in as anyone): use sessions.mode jwks, or set "
                "sessions.allow_insecure_dev_on_network / --insecure-dev-sessions-on-network",
                host)


def _say_isolation(app: Any) -> None:
    """How local workspaces are kept apart, said once at start-up (a warning when not)."""
    from ..gateway import GATEWAY

    gateway = app[GATEWAY]
    backend = gateway.backend
    summary = backend.isolation_summary()
    log = logging.getLogger("hatchway")
    if summary is not None:
        shared = backend.isolation == "shared"
        log.log(logging.WARNING if shared else logging.INFO, "%s", summary)
    if gateway.trusted.first_workspace_uid is not None:
        log.info("trusted_proxies: a peer on this host is believed only if its socket's owner "
                 "is no workspace (uid below %d)", gateway.trusted.first_workspace_uid)


def _launches_locally(settings: Settings) -> bool:
    """Whether the local backend has workspace options to launch (the default ones when no
    hatchery config is given). Without any, every route is a static one, the same in every
    worker: nothing lives in one process, so the port can be shared."""
    return settings.hatchery is None or bool(settings.hatchery.options)


def serve(args: argparse.Namespace) -> int:
    insecure = {"allow_insecure_dev_on_network": True} \
        if args.insecure_dev_sessions_on_network else None
    settings = _settings(args, host=args.host, port=args.port, workers=args.workers,
                         sessions=insecure, log_level=args.log_level)
    _refuse_dev_sessions_on_network(settings)
    from ..observe.logs import configure

    configure(settings.log_level, settings.log_format)  # text or JSON lines, tokens redacted
    if settings.workers > 1 and settings.backend == "local" and _launches_locally(settings):
        raise ConfigError("settings", "workers", "1 with the local backend when it launches "
                          "workspaces (they live in one process); use the kubernetes backend "
                          "for more, or serve only static_routes (a hatchery config with no "
                          "containers)", settings.workers)
    if settings.hatchery is not None:
        _warn_unsupported(settings)
    from .app import build_app

    app = build_app(settings)  # fail on bad config before printing the banner or forking
    print(_banner(settings), flush=True)
    _say_isolation(app)
    from .workers import run_one, run_workers

    if settings.workers <= 1:  # the app built above serves: built once (start-up time)
        run_one(settings, app)
        return 0
    return run_workers(settings)  # each worker builds its own app (proxy.serve.workers)


def token(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if not settings.dev_sessions:
        raise ConfigError("settings", "sessions.mode", "dev (tokens come from Fence otherwise)",
                          settings.sessions.mode)
    from .app import dev_issuer

    print(dev_issuer(settings).mint(args.user, ttl_seconds=args.ttl))
    return 0


def envoy_config(args: argparse.Namespace) -> int:
    settings = _settings(args)
    _refuse_dev_sessions_on_network(settings)
    from proxy.envoy.config import bootstrap_for_settings

    text = bootstrap_for_settings(settings)
    if args.output == "-":
        sys.stdout.write(text)
    else:
        with open(args.output, "w", encoding="utf-8") as fh:
            fh.write(text)
    return 0


def show_settings(args: argparse.Namespace) -> int:
    """``hatchway settings``: the merged, checked tree (JSON); ``--doc``: the README table."""
    if args.doc:
        sys.stdout.write(settings_table())
        return 0
    tree = dataclasses.asdict(dataclasses.replace(_settings(args), hatchery=None))
    del tree["hatchery"]
    sys.stdout.write(json.dumps(tree, indent=2) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command = args.command or "serve"
    if args.command is None:
        args = _parser().parse_args(["serve", *(argv if argv is not None else sys.argv[1:])])
    try:
        return {"serve": serve, "token": token, "envoy-config": envoy_config,
                "settings": show_settings}[command](args)
    except ConfigError as exc:
        print(f"hatchway: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
