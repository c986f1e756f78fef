#!/usr/bin/env bash
# Build Kubernetes' conformance test binary `e2e.test` for the pinned Kubernetes version
# (KUBE_VERSION/STAGING_VERSION of scripts/install-kube.sh) from its Go module.
# Output: ~/.cache/tispace/e2e-<version>/bin/e2e.test, and the ginkgo CLI of the version
# e2e.test is built with (it runs specs in parallel processes: `--procs N` of tispacectl/conformance.py).
# Idempotent: a second run only checks their versions. Used by `make conformance`
# (tispacectl/conformance.py).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
pin() { sed -n "s/^$1=//p" "$HERE/install-kube.sh"; }
KUBE_VERSION=$(pin KUBE_VERSION)
STAGING_VERSION=$(pin STAGING_VERSION)

CACHE="${TISPACE_CACHE:-$HOME/.cache/tispace}"
ROOT="$CACHE/e2e-$KUBE_VERSION"
BIN="$ROOT/bin"
SRC="$ROOT/src/e2e"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false

say() { printf '[install-e2e-test %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

[[ -n "$KUBE_VERSION" && -n "$STAGING_VERSION" ]] || die "cannot read KUBE_VERSION/STAGING_VERSION from $HERE/install-kube.sh"
if [[ "${1:-}" == "--print-bin" ]]; then echo "$BIN"; exit 0; fi

command -v go >/dev/null || die "Go is not installed. Install Go >= 1.26 (https://go.dev/doc/install) and re-run."
GOV=$(go env GOVERSION)
[[ "$(printf '%s\n' go1.26 "$GOV" | sort -V | head -1)" == go1.26 ]] || die "Go $GOV is too old; Kubernetes $KUBE_VERSION needs Go >= 1.26."

e2e_ok() {
  local out
  out=$("$BIN/e2e.test" --version 2>&1) || return 1
  [[ "${out%%$'\n'*}" == *"$KUBE_VERSION"* ]]
}
check() {
  e2e_ok && [[ -x "$BIN/ginkgo" ]] || return 1
  say "ok  e2e.test: $("$BIN/e2e.test" --version 2>&1 | head -1); $("$BIN/ginkgo" version)"
}

if check; then echo "$BIN"; exit 0; fi
mkdir -p "$BIN" "$SRC"
proxy_hint() { die "fetching Go modules failed; check that the Go module proxy is reachable (go env GOPROXY = $(go env GOPROXY)) and re-run."; }

cd "$SRC"
if ! e2e_ok; then
say "building e2e.test $KUBE_VERSION (cold build: about 7 minutes on 2 cores; progress follows)"
if [[ "$(cat .resolved 2>/dev/null)" != "$KUBE_VERSION" ]]; then
  # Same wrapper as install-kube.sh's kube module: every staging module replaced by its
  # published $STAGING_VERSION (the kubernetes module's own go.mod points them at ./staging).
  KUBE_SRC="$CACHE/kube-$KUBE_VERSION-etcd-$(pin ETCD_VERSION)-kwok-$(pin KWOK_VERSION)/src/kube"
  if [[ -f "$KUBE_SRC/go.mod" ]] && grep -q "k8s.io/kubernetes $KUBE_VERSION" "$KUBE_SRC/go.mod"; then
    say "wrapper module: copying $KUBE_SRC"
    cp "$KUBE_SRC/go.mod" "$KUBE_SRC/go.sum" .
    go mod edit -module=local.test/e2ebuild
  else
    say "wrapper module: staging modules -> $STAGING_VERSION"
    rm -f go.mod go.sum
    go mod init local.test/e2ebuild >/dev/null 2>&1; go mod edit -go=1.26
    MOD=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | python3 -c 'import json,sys;print(json.load(sys.stdin)["GoMod"])') || proxy_hint
    for m in $(sed -n 's#^[[:space:]]*\(k8s\.io/[a-z0-9-]*\) => \./staging/.*#\1#p' "$MOD"); do
      go mod edit -replace="$m=$m@$STAGING_VERSION"
    done
  fi
  say "resolving the test dependencies of k8s.io/kubernetes/test/e2e"
  go get -t "k8s.io/kubernetes/test/e2e@$KUBE_VERSION" >/dev/null || proxy_hint
  echo "$KUBE_VERSION" > .resolved
fi

minor=$(echo "$KUBE_VERSION" | cut -d. -f2)
V="-X k8s.io/component-base/version"; C="-X k8s.io/client-go/pkg/version"
LD="-s -w $V.gitVersion=$KUBE_VERSION $V.gitMajor=1 $V.gitMinor=$minor $V.gitTreeState=clean $C.gitVersion=$KUBE_VERSION $C.gitMajor=1 $C.gitMinor=$minor"
say "compiling e2e.test (nice -n 19; no vet)"
nice -n 19 go test -c -vet=off -trimpath -ldflags "$LD" -o "$BIN/e2e.test.tmp" k8s.io/kubernetes/test/e2e
mv "$BIN/e2e.test.tmp" "$BIN/e2e.test"
fi
GINKGO=$(go list -m -f '{{.Version}}' github.com/onsi/ginkgo/v2)
say "building the ginkgo CLI $GINKGO (the version e2e.test is built with)"
GOBIN="$BIN" go install "github.com/onsi/ginkgo/v2/ginkgo@$GINKGO" || proxy_hint
check || die "e2e.test built but --version does not report $KUBE_VERSION"
say "done: $BIN"
echo "$BIN"
