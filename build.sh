#!/usr/bin/env bash
# build.sh — the one entry point. Idempotent; installs what is missing from the package
# registries (Debian, crates.io, npm) and never downloads a browser or toolchain elsewhere.
#
#   ./build.sh test    cargo test (release) with what the tests need (Vulkan lavapipe for wgpu)
#
set -euo pipefail
cd "$(dirname "$0")"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

apt_install() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    if ! command -v apt-get >/dev/null; then log "please install: ${missing[*]}"; return 0; fi
    log "apt-get install ${missing[*]}"
    local sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq || true
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

test_deps() {
  # Mesa's lavapipe gives wgpu a Vulkan adapter on machines without a GPU.
  apt_install mesa-vulkan-drivers libvulkan1
}

run_tests() {
  test_deps
  # The Vulkan loader complains on every adapter probe without a runtime dir.
  if [ -z "${XDG_RUNTIME_DIR:-}" ]; then export XDG_RUNTIME_DIR="$(mktemp -d)"; fi
  log "cargo test --release"
  cargo test --release --all-targets
}

case "${1:-test}" in
  test) run_tests ;;
  *) echo "usage: $0 test" >&2; exit 2 ;;
esac
