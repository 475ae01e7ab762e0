"""Load harness for the proxy hot path: hatchway side by side with Envoy, nginx and
configurable-http-proxy (issue 5). Entry point: ``python -m benchmarks.run``."""
