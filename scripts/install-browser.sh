#!/usr/bin/env bash
# Install the headless Chromium that the browser tests drive through Playwright.
# Playwright's own browser download is not used: we take Debian's `chromium` package and
# point Playwright at it with executable_path (set PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1).
# Prints the path to give Playwright as executable_path on stdout: Debian's real binary
# /usr/lib/chromium/chromium, not the /usr/bin/chromium shell wrapper (which adds flags such as
# --load-extension and sources /etc/chromium.d). Idempotent: a second run only checks the version.
set -euo pipefail

PACKAGES=(chromium fonts-dejavu-core)   # fonts: screenshots need at least one font to render text

say() { printf '[install-browser %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

find_chromium() { # $CHROMIUM if set, else chromium on PATH, else /usr/bin/chromium
  local c
  if [[ -n "${CHROMIUM:-}" ]]; then echo "$CHROMIUM"; return 0; fi
  for c in "$(command -v chromium 2>/dev/null || true)" /usr/bin/chromium; do
    [[ -n "$c" && -x "$c" ]] && { echo "$c"; return 0; }
  done
  return 1
}

exe_path() { # the binary for Playwright's executable_path
  local bin
  bin=$(find_chromium) || return 1
  if [[ -z "${CHROMIUM:-}" && -x /usr/lib/chromium/chromium ]]; then bin=/usr/lib/chromium/chromium; fi
  echo "$bin"
}

check() { # logs the version of the Chromium found and prints its executable_path; fails if none runs
  local bin out
  bin=$(find_chromium) || return 1
  out=$("$bin" --version 2>/dev/null) || return 1
  say "ok  $bin: $out"
  exe_path
}

if [[ -n "${CHROMIUM:-}" && ! -x "${CHROMIUM:-}" ]]; then die "CHROMIUM=$CHROMIUM is not an executable file."; fi
if [[ "${1:-}" == "--print-bin" ]]; then exe_path || die "chromium is not installed; run $0"; exit 0; fi

if bin=$(check); then echo "$bin"; exit 0; fi

command -v apt-get >/dev/null || die "apt-get not found; install Chromium with your package manager and set CHROMIUM=/path/to/chromium."
SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || die "not root and sudo is not available; run as root."
  SUDO=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
say "apt-get update"
"${SUDO[@]}" apt-get update -qq || die "apt-get update failed; check that the Debian mirrors are reachable."
say "installing: ${PACKAGES[*]} (~115 MB download plus ~25 small libraries; 10 s on a fast mirror)"
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null \
  || die "apt-get install ${PACKAGES[*]} failed."
bin=$(check) || die "chromium installed but \`chromium --version\` does not run."
say "done: $bin"
echo "$bin"
