#!/usr/bin/env bash
# End to end on a real cluster: build hatchway's image, load it into kind, apply deploy/kind,
# launch a workspace through replica 1, reach it through replica 1 AND replica 2 (the same
# process answers: routes come from the cluster, not from a replica's memory), terminate it,
# and check the user's volume is kept.
#
# Needs Docker, kind, kubectl, curl and python3. It was written alongside tests that run
# against an emulated API server; it was NOT run where hatchway was developed (no Docker there).
#
#   deploy/kind/e2e.sh            # creates the cluster if needed, deletes it at the end
#   KEEP=1 deploy/kind/e2e.sh     # leave the cluster running
set -euo pipefail
cd "$(dirname "$0")/../.."

CLUSTER=${CLUSTER:-hatchway}
IMAGE=hatchway:kind
NAMESPACE=default              # deploy/kind/install.yaml is rendered for it
USERS=jupyter-pods-$NAMESPACE  # the user namespace
USER_NAME=${USER_NAME:-alice@example.org}
PORTS=(18081 18082)
PIDS=()

say() { printf '\n== %s\n' "$*"; }
fail() { printf 'e2e: FAILED: %s\n' "$*" >&2; exit 1; }
for tool in docker kind kubectl curl python3; do
  command -v "$tool" >/dev/null || fail "'$tool' is required"
done

cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  if [ "${KEEP:-0}" != 1 ]; then kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

say "cluster $CLUSTER"
kind get clusters 2>/dev/null | grep -qx "$CLUSTER" ||
  kind create cluster --name "$CLUSTER" --config deploy/kind/cluster.yaml --wait 120s

say "image $IMAGE"
docker build -f deploy/Dockerfile -t "$IMAGE" .
kind load docker-image "$IMAGE" --name "$CLUSTER"

say "apply deploy/kind"
kubectl apply -k deploy/kind
kubectl -n "$NAMESPACE" rollout status deploy/hatchway --timeout=180s
read -r -a REPLICAS <<<"$(kubectl -n "$NAMESPACE" get pods -l app.kubernetes.io/name=hatchway \
  --field-selector=status.phase=Running -o jsonpath='{.items[*].metadata.name}')"
[ "${#REPLICAS[@]}" -ge 2 ] || fail "expected 2 running replicas, got ${REPLICAS[*]:-none}"

TOKENS=()
for i in 0 1; do
  kubectl -n "$NAMESPACE" port-forward "pod/${REPLICAS[$i]}" "${PORTS[$i]}:8080" >/dev/null &
  PIDS+=($!)
  # dev sessions: each replica signs with its own key, so ask each for its own token
  TOKENS+=("$(kubectl -n "$NAMESPACE" exec "${REPLICAS[$i]}" -- \
    hatchway token "$USER_NAME" --config /etc/hatchway/hatchway.yaml)")
done
sleep 2

api() {  # api REPLICA PATH [curl args...]
  local i=$1 path=$2; shift 2
  curl -fsS -H "Authorization: Bearer ${TOKENS[$i]}" "http://127.0.0.1:${PORTS[$i]}$path" "$@"
}
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
wait_status() {  # wait_status WANTED SECONDS
  for _ in $(seq "$2"); do
    [ "$(api 0 /lw-workspace/status | json "['status']")" = "$1" ] && return 0
    sleep 1
  done
  fail "status never became $1"
}

say "launch through replica 1"
ID=$(api 0 /lw-workspace/options | json "[0]['id']")
[ "$(api 0 "/lw-workspace/launch?id=$ID" -X POST)" = "Success" ] || fail "launch"
wait_status Running 180
kubectl -n "$USERS" get pods,services,endpointslices,pvc

say "the same workspace through both replicas"
FIRST=$(api 0 /lw-workspace/proxy/api/status | json "['started']")
SECOND=$(api 1 /lw-workspace/proxy/api/status | json "['started']")
[ "$FIRST" = "$SECOND" ] || fail "replicas reached different workspaces ($FIRST vs $SECOND)"
api 0 /lw-workspace/_status | json "['backend_health']['watch']"

say "terminate"
[ "$(api 0 /lw-workspace/terminate -X POST)" = "Terminated workspace" ] || fail "terminate"
wait_status "Not Found" 60
kubectl -n "$USERS" get pvc "claim-$(python3 -c '
import sys
print("".join(c if c in "abcdefghijklmnopqrstuvwxyz0123456789" else "-%2x" % ord(c)
              for c in sys.argv[1]))' "$USER_NAME")" >/dev/null || fail "the user volume is gone"

say "PASS"
