#!/usr/bin/env bash
# deploy/install.yaml, deploy/monitoring/install.yaml and deploy/kind/install.yaml are the
# chart (deploy/helm/hatchway) rendered with deploy/values.yaml (kind: deploy/kind/values.yaml)
# and hatchery.json from deploy/config (kind: deploy/kind), for `kubectl apply -k` without Helm.
#   deploy/render.sh           # write them
#   deploy/render.sh --check   # exit 1 if one differs from a fresh render (tests/helm run it)
# HELM names the helm to use (default: the repository's .build/bin/helm, else helm on PATH).
set -euo pipefail
cd "$(dirname "$0")"
HELM=${HELM:-$(if [ -x ../.build/bin/helm ]; then echo ../.build/bin/helm; else echo helm; fi)}
NAMESPACE=default

render() {  # render VALUES HATCHERY_JSON [helm args...]
  local values=$1 hatchery=$2; shift 2
  printf '# Rendered by deploy/render.sh from deploy/helm/hatchway with deploy/%s: do not edit by\n' "$values"
  printf '# hand, render again (see deploy/README.md for the fields to change without Helm).\n'
  "$HELM" template hatchway helm/hatchway --namespace "$NAMESPACE" -f "$values" \
    --set-file "hatchery.json=$hatchery" "$@"
}

declare -A out
out[install.yaml]=$(render values.yaml config/hatchery.json)
out[monitoring/install.yaml]=$(render values.yaml config/hatchery.json \
  --set metrics.serviceMonitor.enabled=true,metrics.prometheusRule.enabled=true \
  --show-only templates/monitoring.yaml)
out[kind/install.yaml]=$(render kind/values.yaml kind/hatchery.json)

status=0
for file in install.yaml monitoring/install.yaml kind/install.yaml; do
  if [ "${1:-}" = --check ]; then
    if ! diff -u "$file" <(printf '%s\n' "${out[$file]}") >&2; then
      echo "deploy/$file is not what deploy/render.sh renders: run it" >&2
      status=1
    fi
  else
    printf '%s\n' "${out[$file]}" > "$file"
  fi
done
exit $status
