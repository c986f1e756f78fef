#!/usr/bin/env bash
# Build the local OpenID Connect provider used by the login tests (scripts/oidc-provider:
# the zitadel/oidc example OP with users and clients from a JSON file) from its Go module.
# Output: ~/.cache/tispace/oidc-provider-zitadel-<version>/bin/oidc-provider.
# Idempotent: a second run only compares a hash of the sources with the one recorded at build time.
set -euo pipefail

# Keep in step with the require line in scripts/oidc-provider/go.mod.
ZITADEL_OIDC_VERSION=v3.52.0

CACHE="${TISPACE_CACHE:-$HOME/.cache/tispace}"
ROOT="$CACHE/oidc-provider-zitadel-$ZITADEL_OIDC_VERSION"
BIN="$ROOT/bin"
SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/oidc-provider"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false

say() { printf '[install-oidc %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

if [[ "${1:-}" == "--print-bin" ]]; then echo "$BIN/oidc-provider"; exit 0; fi

# A change to main.go, go.mod or go.sum must rebuild even though the version is the same.
stamp=$(cd "$SRC" && cat main.go go.mod go.sum | sha256sum | cut -d' ' -f1)
if [[ -x "$BIN/oidc-provider" && "$(cat "$BIN/.source-sha256" 2>/dev/null)" == "$stamp" ]]; then
  say "ok  oidc-provider (zitadel/oidc $ZITADEL_OIDC_VERSION) present in $BIN"
  echo "$BIN/oidc-provider"; exit 0
fi

command -v go >/dev/null || die "Go is not installed. Install Go >= 1.26 (https://go.dev/doc/install) and re-run."
GOV=$(go env GOVERSION)
[[ "$(printf '%s\n' go1.26 "$GOV" | sort -V | head -1)" == go1.26 ]] || die "Go $GOV is too old; zitadel/oidc $ZITADEL_OIDC_VERSION needs Go >= 1.26."
grep -q "github.com/zitadel/oidc/v3 $ZITADEL_OIDC_VERSION" "$SRC/go.mod" || die "$SRC/go.mod does not require zitadel/oidc $ZITADEL_OIDC_VERSION"

say "building oidc-provider from $SRC (zitadel/oidc $ZITADEL_OIDC_VERSION; cold build about 25 s on 2 cores)"
mkdir -p "$BIN"
cd "$SRC"
go mod download || die "fetching Go modules failed; check that the Go module proxy is reachable (go env GOPROXY = $(go env GOPROXY)) and re-run."
go build -trimpath -ldflags "-s -w" -o "$BIN/oidc-provider.tmp" .
mv "$BIN/oidc-provider.tmp" "$BIN/oidc-provider"   # atomic: a concurrent run never sees half a binary
echo "$stamp" > "$BIN/.source-sha256"
say "done: $BIN/oidc-provider"
echo "$BIN/oidc-provider"
