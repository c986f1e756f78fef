#!/usr/bin/env bash
# Build the Kubernetes binaries TiSpace runs locally (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kubectl, kwok, coredns) from their Go modules.
# Output: ~/.cache/tispace/<version>/bin. Idempotent: a second run only checks versions.
set -euo pipefail

# The one place versions are pinned (tispace/binaries.py reads this file).
KUBE_VERSION=v1.36.3
STAGING_VERSION=v0.36.3
ETCD_VERSION=v3.6.14
KWOK_VERSION=v0.8.0
COREDNS_VERSION=v1.15.0

CACHE="${TISPACE_CACHE:-$HOME/.cache/tispace}"
ROOT="$CACHE/kube-$KUBE_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION"
BIN="$ROOT/bin"
SRC="$ROOT/src"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false

say() { printf '[install-kube %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

if [[ "${1:-}" == "--print-bin" ]]; then echo "$BIN"; exit 0; fi

command -v go >/dev/null || die "Go is not installed. Install Go >= 1.26 (https://go.dev/doc/install) and re-run."
GOV=$(go env GOVERSION)
[[ "$(printf '%s\n' go1.26 "$GOV" | sort -V | head -1)" == go1.26 ]] || die "Go $GOV is too old; Kubernetes $KUBE_VERSION needs Go >= 1.26."

check() { # name expected-substring
  local out flag=--version
  [[ "$1" == kubectl ]] && flag="version --client"
  [[ "$1" == coredns ]] && flag=-version
  # shellcheck disable=SC2086
  out=$("$BIN/$1" $flag 2>&1) || return 1   # no `| head`: with pipefail, SIGPIPE would fail the check
  out=${out%%$'\n'*}
  [[ "$out" == *"$2"* ]] || return 1
  say "ok  $1: $out"
}

need=()
check etcd "${ETCD_VERSION#v}" || need+=(etcd)
for b in kube-apiserver kube-controller-manager kube-scheduler; do check "$b" "$KUBE_VERSION" || need+=("$b"); done
check kubectl "$KUBE_VERSION" || need+=(kubectl)
check kwok "$KWOK_VERSION" || need+=(kwok)
check coredns "CoreDNS-${COREDNS_VERSION#v}" || need+=(coredns)
if [[ ${#need[@]} -eq 0 ]]; then say "all binaries present in $BIN"; echo "$BIN"; exit 0; fi
say "building: ${need[*]} (cold build: about 10 minutes on 2 cores; progress follows)"
mkdir -p "$BIN" "$SRC"

proxy_hint() { die "fetching Go modules failed; check that the Go module proxy is reachable (go env GOPROXY = $(go env GOPROXY)) and re-run."; }

contains() { local x; for x in "${need[@]}"; do [[ "$x" == "$1" ]] && return 0; done; return 1; }

if contains etcd; then
  say "etcd $ETCD_VERSION: preparing wrapper module"
  mkdir -p "$SRC/etcd" && cd "$SRC/etcd"
  [[ -f go.mod ]] || { go mod init local.test/etcdbuild >/dev/null 2>&1; go mod edit -go=1.26; }
  go get -tool "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >/dev/null 2>&1 || proxy_hint
  say "etcd: compiling"
  go build -trimpath -ldflags "-s -w" -o "$BIN/etcd" go.etcd.io/etcd/server/v3
  check etcd "${ETCD_VERSION#v}" || die "etcd built but --version does not report $ETCD_VERSION"
fi

kube=()
for b in kube-apiserver kube-controller-manager kube-scheduler kubectl; do contains "$b" && kube+=("$b"); done
if [[ ${#kube[@]} -gt 0 ]]; then
  say "kubernetes $KUBE_VERSION: preparing wrapper module (staging modules -> $STAGING_VERSION)"
  mkdir -p "$SRC/kube" && cd "$SRC/kube"
  if [[ ! -f go.mod ]] || ! grep -q "k8s.io/kubernetes $KUBE_VERSION" go.mod; then
    rm -f go.mod go.sum
    go mod init local.test/kubebuild >/dev/null 2>&1; go mod edit -go=1.26
    MOD=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | python3 -c 'import json,sys;print(json.load(sys.stdin)["GoMod"])') || proxy_hint
    for m in $(sed -n 's#^[[:space:]]*\(k8s\.io/[a-z0-9-]*\) => \./staging/.*#\1#p' "$MOD"); do
      go mod edit -replace="$m=$m@$STAGING_VERSION"
    done
    say "kubernetes: resolving dependencies"
    go get -tool "k8s.io/kubernetes/cmd/kube-apiserver@$KUBE_VERSION" "k8s.io/kubernetes/cmd/kube-controller-manager@$KUBE_VERSION" \
      "k8s.io/kubernetes/cmd/kube-scheduler@$KUBE_VERSION" "k8s.io/kubernetes/cmd/kubectl@$KUBE_VERSION" >/dev/null || proxy_hint
  fi
  minor=$(echo "$KUBE_VERSION" | cut -d. -f2)
  V="-X k8s.io/component-base/version"; C="-X k8s.io/client-go/pkg/version"
  LD="-s -w $V.gitVersion=$KUBE_VERSION $V.gitMajor=1 $V.gitMinor=$minor $V.gitTreeState=clean $C.gitVersion=$KUBE_VERSION $C.gitMajor=1 $C.gitMinor=$minor"
  for b in "${kube[@]}"; do
    say "kubernetes: compiling $b"
    go build -trimpath -tags notest -ldflags "$LD" -o "$BIN/$b" "k8s.io/kubernetes/cmd/$b"
    check "$b" "$KUBE_VERSION" || die "$b built but --version does not report $KUBE_VERSION"
  done
fi

if contains kwok; then
  say "kwok $KWOK_VERSION: compiling"
  GOBIN="$BIN" go install "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" || proxy_hint
  check kwok "$KWOK_VERSION" || die "kwok built but --version does not report $KWOK_VERSION"
  # Stage and CRD manifests ship inside the module; keep a copy next to the binary.
  rm -rf "$ROOT/kwok-kustomize"
  cp -r "$(go env GOMODCACHE)/sigs.k8s.io/kwok@$KWOK_VERSION/kustomize" "$ROOT/kwok-kustomize"
  chmod -R u+w "$ROOT/kwok-kustomize"
fi
if contains coredns; then
  say "coredns $COREDNS_VERSION: preparing wrapper module"
  mkdir -p "$SRC/coredns" && cd "$SRC/coredns"
  [[ -f go.mod ]] || { go mod init local.test/corednsbuild >/dev/null 2>&1; go mod edit -go=1.26; }
  go get -tool "github.com/coredns/coredns@$COREDNS_VERSION" >/dev/null 2>&1 || proxy_hint
  say "coredns: compiling"
  go build -trimpath -ldflags "-s -w" -o "$BIN/coredns" github.com/coredns/coredns
  check coredns "CoreDNS-${COREDNS_VERSION#v}" || die "coredns built but -version does not report $COREDNS_VERSION"
fi
say "done: $BIN"
echo "$BIN"
