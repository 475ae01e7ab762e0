"""Envoy mode: hatchway writes Envoy's routing config, answers its ext_authz checks and reads
its activity; a real Envoy relays the traffic."""
