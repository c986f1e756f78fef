#!/usr/bin/env bash
# kubectl exec round trip and `kubectl logs` throughput through vn_agent (the sample tenant's
# kubeconfig: tenant API server -> egress tunnel -> vn_agent -> super API server -> KWOK) against
# the same calls made directly in the super cluster, in one run. Needs a running `tispace up`.
# Usage: scripts/bench-vn-agent.sh [STATE_DIR] [EXECS] [LOG_MIB]
set -euo pipefail
state=$(cd "${1:-.tispace}" && pwd)
execs=${2:-20}
log_mib=${3:-50}
kubectl=$(ls "$HOME"/.cache/tispace/*/bin/kubectl | head -1)
tenant=(--kubeconfig "$state/tenants/dev.kubeconfig")
super=(--kubeconfig "$state/super.kubeconfig")
log="$state/kwok/container.log"

"$kubectl" "${tenant[@]}" run vn-bench --image=busybox --restart=Never >/dev/null 2>&1 || true
"$kubectl" "${tenant[@]}" wait --for=condition=Ready pod/vn-bench --timeout=60s >/dev/null
sns=$("$kubectl" "${super[@]}" get pods -A --field-selector metadata.name=vn-bench \
  -o jsonpath='{.items[0].metadata.namespace}')

ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
per_exec() {  # average milliseconds of one `kubectl exec -- true`
  local t0; t0=$(date +%s%N)
  for _ in $(seq "$execs"); do "$kubectl" "$@" exec vn-bench -- true >/dev/null; done
  echo $(( $(ms "$t0") / execs ))
}
mib_per_s() {  # MiB/s of one full `kubectl logs`
  local t0 bytes elapsed; t0=$(date +%s%N)
  bytes=$("$kubectl" "$@" logs vn-bench | wc -c)
  elapsed=$(ms "$t0")
  echo "scale=1; $bytes / 1048576 / ($elapsed / 1000)" | bc
}

cp "$log" "$log.orig"
trap 'mv "$log.orig" "$log"; "$kubectl" "${tenant[@]}" delete pod vn-bench --wait=false >/dev/null 2>&1 || true' EXIT
line="$(date -u +%Y-%m-%dT%H:%M:%S.000000000Z) stdout F $(head -c 100 /dev/zero | tr '\0' x)"
yes "$line" | head -c $(( log_mib * 1048576 )) > "$log" || true  # yes ends on SIGPIPE

echo "exec: through vn_agent $(per_exec "${tenant[@]}") ms, directly $(per_exec "${super[@]}" -n "$sns") ms (mean of $execs)"
echo "logs ($log_mib MiB): through vn_agent $(mib_per_s "${tenant[@]}") MiB/s, directly $(mib_per_s "${super[@]}" -n "$sns") MiB/s"
