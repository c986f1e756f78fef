#!/usr/bin/env bash
# Build TiDB Operator v2 and v1 (and helm) for the e2e tests, from the upstream release source
# archives in ../../shared/vendor/tidb-operator (the Go module proxy refuses
# github.com/pingcap/tidb-operator, so it cannot be fetched as a module; all of its
# dependencies, and helm, come from the proxy). Idempotent: a second run only checks stamps
# and versions (seconds); a cold build takes about 15-20 minutes on 2 cores
# (v2 about 8, v1 about 6, helm about 4).
#
# Usage: install-tidb-operator.sh [--source DIR]... [--release] | --print-bin | --help
#   --source DIR  build from your own checkout instead of the archive: DIR is v2 when it has
#                 cmd/tidb-operator and its go.mod module ends in /v2, v1 when it has
#                 cmd/controller-manager. Always rebuilds (the Go build cache keeps an
#                 unchanged tree to seconds); charts, CRDs and examples are copied from DIR
#                 too. Later plain runs keep such a build; --release goes back to the archive.
#   --release     rebuild from the archives whatever an earlier --source run built.
#   --print-bin   print the bin directory and exit (builds nothing).
# Env: TIDB_OPERATOR_ARCHIVES=DIR  folder holding the two .tar.xz archives;
#      TISPACE_CACHE=DIR           cache root (default ~/.cache/tispace).
#
# Layout, <root> = $TISPACE_CACHE/tidb-operator-<v2>-<v1> (bin is printed on stdout at the end):
#   <root>/bin/tidb-operator              v2 operator (./cmd/tidb-operator; --help, no version flag)
#   <root>/bin/tidb-controller-manager    v1 operator (./cmd/controller-manager; -V prints the version)
#   <root>/bin/tidb-discovery             v1 discovery service (./cmd/discovery; -V)
#   <root>/bin/helm                       helm (helm version --short)
#   <root>/v2/charts/tidb-operator        v2 helm chart
#   <root>/v2/manifests/crd/*.yaml        v2 CRDs
#   <root>/v2/examples/basic/             v2 example cluster
#   <root>/v1/charts/tidb-operator        v1 helm chart
#   <root>/v1/manifests/crd.yaml          v1 CRDs (one file)
#   <root>/v1/examples/basic/             v1 example cluster
#   <root>/src/tidb-operator-<version>/   extracted archive trees (build directories, kept)
#   <root>/src/helm/                      wrapper module that builds helm
#   <root>/stamps/<binary>, <root>/stamps/v2-files, v1-files
#                                         what each binary / file set was built from
set -euo pipefail

# The one place versions are pinned.
TIDB_OPERATOR_V2=v2.0.1
TIDB_OPERATOR_V1=v1.6.6
HELM_VERSION=v4.3.2
# Release archives (see ../../shared/vendor/tidb-operator/README.md): sha256 and upstream commit.
V2_SHA256=c7ac3ac3267feb77a071ff87b2ed67cb1cd296db805b9cfcaa83109ece839b99
V1_SHA256=29da88e7765f213dfd8ca0a098fe5e158133ff8dfd071dc70c1dcf3e9e1f2c63
V2_COMMIT=c1490b6fd060766fb497ba4f70d1d727484ac466
V1_COMMIT=edf76fd646cbbb0c97e4eed51456bfedc24a4ca7

CACHE="${TISPACE_CACHE:-$HOME/.cache/tispace}"
ROOT="$CACHE/tidb-operator-$TIDB_OPERATOR_V2-$TIDB_OPERATOR_V1"
BIN="$ROOT/bin"
SRC="$ROOT/src"
STAMPS="$ROOT/stamps"
# The archives sit in shared/vendor/tidb-operator next to the repository; a clone made elsewhere
# (a CI checkout of a local repository) finds them next to the repository it was cloned from.
find_archives() {
  local repo origin
  repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  origin=$(git -C "$repo" remote get-url origin 2>/dev/null || true)
  for d in "$repo/../shared/vendor/tidb-operator" "$origin/../shared/vendor/tidb-operator"; do
    [[ -f "$d/tidb-operator-$TIDB_OPERATOR_V2.tar.xz" ]] && { (cd "$d" && pwd); return; }
  done
  echo "$repo/../shared/vendor/tidb-operator"
}
ARCHIVES="${TIDB_OPERATOR_ARCHIVES:-$(find_archives)}"
[[ -d "$ARCHIVES" ]] && ARCHIVES=$(cd "$ARCHIVES" && pwd)
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false

say() { printf '[install-tidb-operator %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }

sources=() release=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --print-bin) echo "$BIN"; exit 0 ;;
    --source) [[ $# -ge 2 ]] || die "--source needs a directory (a tidb-operator checkout)"; sources+=("$2"); shift 2 ;;
    --source=*) sources+=("${1#--source=}"); shift ;;
    --release) release=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done

command -v go >/dev/null || die "Go is not installed. Install Go >= 1.26 and re-run."
GOV=$(go env GOVERSION)
[[ "$(printf '%s\n' go1.26 "$GOV" | sort -V | head -1)" == go1.26 ]] || die "Go $GOV is too old; helm $HELM_VERSION needs Go >= 1.26."

mkdir -p "$BIN" "$SRC" "$STAMPS"
if command -v flock >/dev/null; then   # two runs at once (parallel tests) build once
  exec 9>"$ROOT/.lock"
  flock -n 9 || { say "another run is building in $ROOT; waiting for it"; flock 9; }
fi

# --- which tree builds what --------------------------------------------------------------
# A "line" is v2 or v1: its binaries and its file set (charts, CRDs, examples).
line_bins() { if [[ $1 == v2 ]]; then echo tidb-operator; else echo tidb-controller-manager tidb-discovery; fi; }
line_version() { if [[ $1 == v2 ]]; then echo "$TIDB_OPERATOR_V2"; else echo "$TIDB_OPERATOR_V1"; fi; }
line_sha() { if [[ $1 == v2 ]]; then echo "$V2_SHA256"; else echo "$V1_SHA256"; fi; }
archive_stamp() { echo "$2 $(line_version "$1") archive tidb-operator-$(line_version "$1").tar.xz sha256:$(line_sha "$1")"; }

declare -A SOURCE=()   # line -> absolute source dir (from --source)
for d in "${sources[@]}"; do
  [[ -d "$d" ]] || die "--source $d: no such directory"
  d=$(cd "$d" && pwd)
  [[ -f "$d/go.mod" ]] || die "--source $d: no go.mod; point it at the root of a tidb-operator checkout"
  mod=$(awk '$1 == "module" { print $2; exit }' "$d/go.mod")
  if [[ -d "$d/cmd/tidb-operator" && "$mod" == */v2 ]]; then l=v2
  elif [[ -d "$d/cmd/controller-manager" ]]; then l=v1
  else die "--source $d (module $mod): neither a v2 tree (cmd/tidb-operator, module .../v2) nor a v1 tree (cmd/controller-manager)"
  fi
  [[ -z "${SOURCE[$l]:-}" ]] || die "--source given twice for $l: ${SOURCE[$l]} and $d"
  SOURCE[$l]=$d
done

# --- checks: cheap commands that exit 0 and show it is the right binary --------------------
# Sets OUT to a one-line summary.
probe() { # name
  local out
  case "$1" in
    tidb-operator)   # no version flag, and -trimpath keeps -ldflags out of the build info:
      # --help exits 0 and the build info names the package; the version is in the stamp.
      out=$("$BIN/$1" --help 2>&1) || return 1
      [[ "$out" == *max-concurrent-reconciles* ]] || return 1
      out=$(go version -m "$BIN/$1" 2>/dev/null) || return 1
      [[ "$out" == *$'\tpath\tgithub.com/pingcap/tidb-operator/v2/cmd/tidb-operator\n'* ]] || return 1
      OUT="--help ok, build info path github.com/pingcap/tidb-operator/v2/cmd/tidb-operator; stamp: $(stamp_of "$1")" ;;
    tidb-controller-manager|tidb-discovery)
      out=$("$BIN/$1" -V 2>&1) || return 1   # TiDB Operator Version: version.Info{GitVersion:"v1.6.6", ...}
      [[ "$out" == *"TiDB Operator Version"* ]] || return 1
      OUT=${out%%$'\n'*} ;;
    helm)
      out=$("$BIN/$1" version --short 2>&1) || return 1
      OUT=${out%%$'\n'*} ;;
  esac
}
stamp_of() { cat "$STAMPS/$1" 2>/dev/null || true; }
# ok NAME EXPECTED-STAMP: binary present, stamp matches (or is a kept --source build), probe passes.
ok() {
  local s; s=$(stamp_of "$1")
  [[ -x "$BIN/$1" ]] && probe "$1" || return 1
  if [[ "$s" == "$2" ]]; then say "ok  $1: $OUT"; return 0; fi
  if [[ "$s" == "$1 source "* && $release == 0 ]]; then
    say "ok  $1: $OUT [${s#"$1 "}; kept, --release rebuilds from the archive]"; return 0
  fi
  return 1
}

need_bins=() need_files=()
for l in v2 v1; do
  if [[ -n "${SOURCE[$l]:-}" ]]; then
    for b in $(line_bins $l); do need_bins+=("$b"); done; need_files+=("$l"); continue
  fi
  for b in $(line_bins $l); do ok "$b" "$(archive_stamp $l "$b")" || need_bins+=("$b"); done
  s=$(stamp_of $l-files)
  if [[ -d "$ROOT/$l/charts/tidb-operator" && ( "$s" == "$(archive_stamp $l $l-files)" || ( "$s" == "$l-files source "* && $release == 0 ) ) ]]; then
    say "ok  $l charts, CRDs, examples in $ROOT/$l"
  else need_files+=("$l"); fi
done
ok helm "helm $HELM_VERSION module" || need_bins+=(helm)
if [[ ${#need_bins[@]} -eq 0 && ${#need_files[@]} -eq 0 ]]; then say "all present in $ROOT"; echo "$BIN"; exit 0; fi
say "building: ${need_bins[*]} ${need_files[*]/%/-files} (cold build: about 15-20 minutes on 2 cores; progress follows)"

contains() { local x; for x in "${@:2}"; do [[ "$x" == "$1" ]] && return 0; done; return 1; }
proxy_hint="if modules failed to download, check that the Go module proxy is reachable (go env GOPROXY = $(go env GOPROXY)) and re-run"

# --- sources -------------------------------------------------------------------------------
# Extract (once, after verifying the pinned sha256) the archive of a line; prints the tree.
tree_from_archive() { # line
  local l=$1 v sum want tree tmp a
  v=$(line_version "$l") want=$(line_sha "$l") tree="$SRC/tidb-operator-$(line_version "$l")"
  if [[ "$(cat "$tree/.tispace-archive-sha256" 2>/dev/null)" == "$want" ]]; then echo "$tree"; return; fi
  a="$ARCHIVES/tidb-operator-$v.tar.xz"
  [[ -f "$a" ]] || die "$a not found. Set TIDB_OPERATOR_ARCHIVES=DIR to the folder holding tidb-operator-$TIDB_OPERATOR_V2.tar.xz and tidb-operator-$TIDB_OPERATOR_V1.tar.xz (shared/vendor/tidb-operator next to this repository or the one it was cloned from), or build from a checkout with --source DIR."
  sum=$(sha256sum "$a" | cut -d' ' -f1)
  [[ "$sum" == "$want" ]] || die "$a has sha256 $sum, expected $want: not the pinned $v release archive (corrupt or replaced); restore the original and re-run."
  say "$l: extracting $(basename "$a") (sha256 ok) into $tree"
  tmp=$(mktemp -d "$SRC/.extract.XXXXXX")
  tar -xJf "$a" -C "$tmp" || { rm -rf "$tmp"; die "extracting $a failed"; }
  [[ -f "$tmp/tidb-operator-$v/go.mod" ]] || { rm -rf "$tmp"; die "$a does not hold tidb-operator-$v/go.mod"; }
  rm -rf "$tree"; mv "$tmp/tidb-operator-$v" "$tree"; rmdir "$tmp"
  echo "$want" > "$tree/.tispace-archive-sha256"
  echo "$tree"
}

# -X flags for pkg/version of a line; from git for a --source tree.
version_ldflags() { # line tree from(archive|source)
  local l=$1 t=$2 pkg=github.com/pingcap/tidb-operator/pkg/version v c state=clean
  [[ $l == v2 ]] && pkg=github.com/pingcap/tidb-operator/v2/pkg/version
  if [[ $3 == archive ]]; then
    v=$(line_version "$l"); c=$V1_COMMIT; [[ $l == v2 ]] && c=$V2_COMMIT
  else
    if c=$(git -C "$t" rev-parse HEAD 2>/dev/null); then
      v=$(git -C "$t" describe --tags --always)
      [[ -z "$(git -C "$t" status --porcelain)" ]] || { state=dirty; v+=-dirty; }
    else
      v=v0.0.0-source c=unknown state=unknown   # not a git checkout
    fi
  fi
  echo "-X $pkg.gitVersion=$v -X $pkg.gitCommit=$c -X $pkg.gitTreeState=$state -X $pkg.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
}

install_bin() { # name stamp : move the freshly built $BIN/name.tmp in place, probe, stamp
  rm -f "$STAMPS/$1"
  mv -f "$BIN/$1.tmp" "$BIN/$1"   # atomic: a concurrent user never sees half a binary
  echo "$2" > "$STAMPS/$1"        # every run probes too, so a binary failing below is rebuilt
  probe "$1" || { rm -f "$STAMPS/$1"; die "$1 was built but its check failed (run $BIN/$1 by hand to see why)"; }
  say "ok  $1: $OUT"
}

copy_files() { # line tree stamp
  local l=$1 t=$2 tmp="$ROOT/.$1-files.tmp" p
  for p in charts/tidb-operator examples/basic; do [[ -d "$t/$p" ]] || die "$t has no $p/ (needed by the e2e tests)"; done
  if [[ $l == v2 ]]; then
    compgen -G "$t/manifests/crd/*.yaml" >/dev/null || die "$t has no manifests/crd/*.yaml"
  else
    [[ -f "$t/manifests/crd.yaml" ]] || die "$t has no manifests/crd.yaml"
  fi
  rm -f "$STAMPS/$l-files"; rm -rf "$tmp"; mkdir -p "$tmp/charts" "$tmp/manifests" "$tmp/examples"
  cp -r "$t/charts/tidb-operator" "$tmp/charts/"
  cp -r "$t/examples/basic" "$tmp/examples/"
  if [[ $l == v2 ]]; then mkdir "$tmp/manifests/crd"; cp "$t"/manifests/crd/*.yaml "$tmp/manifests/crd/"
  else cp "$t/manifests/crd.yaml" "$tmp/manifests/"; fi
  chmod -R u+w "$tmp"
  rm -rf "${ROOT:?}/$l"; mv "$tmp" "$ROOT/$l"
  echo "$3" > "$STAMPS/$l-files"
  say "ok  $l charts, CRDs, examples copied to $ROOT/$l"
}

# --- tidb-operator v2 / v1 -----------------------------------------------------------------
declare -A PKG=([tidb-operator]=./cmd/tidb-operator [tidb-controller-manager]=./cmd/controller-manager [tidb-discovery]=./cmd/discovery)
for l in v2 v1; do
  todo=(); for b in $(line_bins $l); do contains "$b" "${need_bins[@]}" && todo+=("$b"); done
  files=0; contains "$l" "${need_files[@]}" && files=1
  [[ ${#todo[@]} -gt 0 || $files == 1 ]] || continue
  if [[ -n "${SOURCE[$l]:-}" ]]; then
    tree=${SOURCE[$l]} from=source gf=""   # the user's go.mod/go.sum are left as they are
    origin="source $tree $(git -C "$tree" describe --tags --always --dirty 2>/dev/null || echo no-git)"
  else
    tree=$(tree_from_archive $l)
    from=archive gf=-mod=mod   # -mod=mod: our own extracted copy may have its go.sum completed
    origin=""
  fi
  for b in "${todo[@]}"; do
    say "$l: compiling $b from $tree (${PKG[$b]})"
    (cd "$tree" && GOFLAGS="$GOFLAGS $gf" go build -trimpath -ldflags "-s -w $(version_ldflags $l "$tree" $from)" -o "$BIN/$b.tmp" "${PKG[$b]}") \
      || die "building $b in $tree failed (errors above); $proxy_hint."
    if [[ $from == archive ]]; then install_bin "$b" "$(archive_stamp $l "$b")"; else install_bin "$b" "$b $origin"; fi
  done
  if [[ $files == 1 ]]; then
    if [[ $from == archive ]]; then copy_files $l "$tree" "$(archive_stamp $l $l-files)"; else copy_files $l "$tree" "$l-files $origin"; fi
  fi
done

# --- helm ----------------------------------------------------------------------------------
if contains helm "${need_bins[@]}"; then
  say "helm $HELM_VERSION: preparing wrapper module"
  mkdir -p "$SRC/helm" && cd "$SRC/helm"
  if [[ ! -f go.mod ]] || ! grep -q "helm.sh/helm/v4 $HELM_VERSION" go.mod; then
    rm -f go.mod go.sum
    go mod init local.test/helmbuild >/dev/null 2>&1; go mod edit -go=1.26
    say "helm: resolving dependencies"
    go get -tool "helm.sh/helm/v4/cmd/helm@$HELM_VERSION" >/dev/null || die "go get helm $HELM_VERSION failed; $proxy_hint."
  fi
  say "helm: compiling"
  go build -trimpath -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION" -o "$BIN/helm.tmp" helm.sh/helm/v4/cmd/helm \
    || die "building helm failed (errors above); $proxy_hint."
  install_bin helm "helm $HELM_VERSION module"
  [[ "$OUT" == "$HELM_VERSION"* ]] || die "helm built but 'helm version --short' says $OUT, not $HELM_VERSION"
fi
say "done: $ROOT (binaries in $BIN)"
echo "$BIN"
