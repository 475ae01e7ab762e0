"""Prometheus, as far as the benchmark needs it: GET a /metrics URL every few seconds, so a
proxy measured with its metrics on pays for being scraped as it would in production.

    python -m benchmarks.scrape http://127.0.0.1:9100/metrics --every 5

One line per scrape (status, bytes, milliseconds) on stdout. It stops after ``--max-seconds``
if nobody stops it first (the harness kills it with the proxy it scrapes).
"""

from __future__ import annotations

import argparse
import sys
import time
import urllib.error
import urllib.request

SCRAPE_INTERVAL = 5.0  # seconds: a typical Prometheus scrape_interval is 15-60 s; 5 s is harsh


def scrape_once(url: str, timeout: float) -> tuple[int, int]:
    """(HTTP status, body bytes); (0, 0) when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback
            return int(resp.status), len(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, 0
    except (urllib.error.URLError, OSError):
        return 0, 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.scrape", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("url")
    ap.add_argument("--every", type=float, default=SCRAPE_INTERVAL, help="seconds between scrapes")
    ap.add_argument("--max-seconds", type=float, default=6 * 3600.0)
    args = ap.parse_args(argv)
    if args.every <= 0:
        raise SystemExit("--every must be positive")
    started = time.monotonic()
    n = 0
    while time.monotonic() - started < args.max_seconds:
        began = time.monotonic()
        status, size = scrape_once(args.url, timeout=min(args.every, 10.0))
        took = time.monotonic() - began
        n += 1
        print(f"scrape {n}: status {status}, {size} bytes, {took * 1000:.1f} ms", flush=True)
        time.sleep(max(0.0, args.every - took))
    return 0


if __name__ == "__main__":
    sys.exit(main())
