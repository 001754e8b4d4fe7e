#!/usr/bin/env bash
# build.sh — the one entry point. Idempotent; installs what is missing from the package
# registries (Debian, crates.io, npm) and never downloads a browser or toolchain elsewhere.
#
#   ./build.sh          build the web app: the `ctxr-web` crate to wasm (release; a CPU-only build,
#                       the same on threads, and one with WebGPU) + wasm-bindgen + wasm-opt → www/pkg,
#                       weights → www/weights
#   ./build.sh serve    build, then serve www/ on http://127.0.0.1:${PORT:-8080}/
#   ./build.sh lint     rustfmt --check, clippy (native and wasm32) with warnings denied
#   ./build.sh test     lint, the hostile corpus (`ctxr corpus`), cargo test (release), then the
#                       browser tests (Chromium, WebGPU and CPU)
#   ./build.sh bench    build, export the networks to ONNX, then time ctxr against onnxruntime-web
#                       in Chromium (tests/e2e/bench-infer.mjs): a benchmark that prints numbers
#
# With CI=true the wasm is built with a leaner profile (no LTO, no wasm-opt) to fit CI's time.
# With CTXR_REQUIRE_DATA=1 (set by .ci/run) a test that needs ../shared or a wgpu adapter fails
# when they are absent instead of skipping.
set -euo pipefail
cd "$(dirname "$0")"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# Keep in sync with the `wasm-bindgen = "=…"` pin in Cargo.toml.
WASM_BINDGEN_VERSION=0.2.130
BINARYEN_VERSION=132.0.0
PLAYWRIGHT_VERSION=1.65.1
AXE_VERSION=4.14.1
ORT_WEB_VERSION=1.30.0

apt_updated=""
apt_install() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    if ! command -v apt-get >/dev/null; then log "please install: ${missing[*]}"; return 0; fi
    log "apt-get install ${missing[*]}"
    local sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    if [ -z "$apt_updated" ]; then $sudo apt-get update -qq || true; apt_updated=1; fi
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

wasm_target() {
  if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
    log "rustup target add wasm32-unknown-unknown"
    rustup target add wasm32-unknown-unknown
  fi
}

wasm_toolchain() {
  wasm_target
  # The threaded build rebuilds the standard library from its sources.
  rustup component list --installed 2>/dev/null | grep -q '^rust-src' || { log "rustup component add rust-src"; rustup component add rust-src; }
  if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$WASM_BINDGEN_VERSION" ]; then
    log "cargo install wasm-bindgen-cli $WASM_BINDGEN_VERSION"
    cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --force
  fi
}

node_deps() {
  command -v node >/dev/null && command -v npm >/dev/null || apt_install nodejs npm
  # axe-core: the accessibility audit the browser tests inject into the page.
  local want=("playwright-core@$PLAYWRIGHT_VERSION" "axe-core@$AXE_VERSION")
  [ "${CI:-}" = "true" ] || want+=("binaryen@$BINARYEN_VERSION")
  local have=1
  [ -d node_modules/playwright-core ] && [ -f node_modules/axe-core/axe.min.js ] || have=0
  if [ "${CI:-}" != "true" ] && [ ! -x node_modules/.bin/wasm-opt ]; then have=0; fi
  # The speed benchmark's other runtime. One npm call installs everything: without a
  # package.json, `npm install --no-save` removes the packages it was not given.
  if [ "${1:-}" = bench ] || [ -d node_modules/onnxruntime-web ]; then
    want+=("onnxruntime-web@$ORT_WEB_VERSION")
    [ -d node_modules/onnxruntime-web/dist ] || have=0
  fi
  if [ "$have" = 0 ]; then
    log "npm install ${want[*]}"
    npm install --no-save --no-audit --no-fund --loglevel=error "${want[@]}"
  fi
}

build_web() {
  wasm_toolchain
  node_deps
  local profile=wasm-release
  [ "${CI:-}" = "true" ] && profile=wasm-ci
  rm -rf www/pkg && mkdir -p www/pkg
  # Three builds of the one engine: `ctxr_cpu` without the WebGPU stack (about a third of the
  # bytes: what a page running on the CPU downloads and compiles), `ctxr` with it, and
  # `ctxr_threads`, the CPU build whose kernels run on several threads sharing one memory. The
  # worker loads the CPU build unless WebGPU is asked for or has an adapter, and the threaded
  # one in its place where the page is cross-origin isolated (www/worker.js).
  local name features target_dir
  for name in ctxr_cpu ctxr ctxr_threads; do
    features=(); target_dir=target
    [ "$name" = ctxr_cpu ] && features=(--no-default-features)
    local -a env=()
    if [ "$name" = ctxr_threads ]; then
      # Shared memory needs every object built with atomics, the standard library included:
      # rebuilt from rust-src (`-Z build-std`, which RUSTC_BOOTSTRAP lets the stable compiler
      # take; the library's sources are this compiler's own). Its own target folder, as the
      # flags differ. The linker is told to make the memory shared and imported (each thread
      # instantiates the module on it) and to export what wasm-bindgen sets each thread's
      # thread-locals up with; it may grow to 4 GiB, as the other builds' memory (a shared
      # memory must declare its maximum).
      features=(--no-default-features --features threads -Z build-std=panic_abort,std)
      target_dir=target/threads
      local link=""
      for a in --shared-memory --import-memory --max-memory=4294967296 --export=__wasm_init_tls --export=__tls_size --export=__tls_align --export=__tls_base; do
        link+=" -C link-arg=$a"
      done
      env=(RUSTC_BOOTSTRAP=1 RUSTFLAGS="-C target-feature=+atomics,+bulk-memory,+mutable-globals,+simd128$link")
    fi
    log "cargo build -p ctxr-web ${features[*]} --target wasm32-unknown-unknown --profile $profile"
    env "${env[@]}" cargo build -p ctxr-web --lib "${features[@]}" --target wasm32-unknown-unknown --profile "$profile" --target-dir "$target_dir"
    log "wasm-bindgen --target web → www/pkg/$name.js"
    wasm-bindgen --target web --no-typescript --out-name "$name" --out-dir www/pkg "$target_dir/wasm32-unknown-unknown/$profile/ctxr_web.wasm"
    if [ "$profile" = wasm-release ] && [ -x node_modules/.bin/wasm-opt ]; then
      log "wasm-opt -O3 $name (binaryen $BINARYEN_VERSION from npm; Debian's binaryen breaks the module)"
      node_modules/.bin/wasm-opt -O3 --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
        --enable-simd --enable-mutable-globals --enable-threads "www/pkg/${name}_bg.wasm" -o "www/pkg/${name}_bg.opt.wasm"
      mv "www/pkg/${name}_bg.opt.wasm" "www/pkg/${name}_bg.wasm"
    fi
  done
  rm -rf www/weights && mkdir -p www/weights
  cp weights/manifest.json weights/*.details.json weights/*.bpk www/weights/
  log "built: $(du -h www/pkg/ctxr_cpu_bg.wasm | cut -f1) CPU wasm, $(du -h www/pkg/ctxr_threads_bg.wasm | cut -f1) threaded CPU wasm, $(du -h www/pkg/ctxr_bg.wasm | cut -f1) WebGPU and CPU wasm, $(du -ch www/weights/* | tail -1 | cut -f1) weights"
}

test_deps() {
  # Mesa's lavapipe gives wgpu a Vulkan adapter on machines without a GPU; Chromium runs the
  # browser tests (WebGPU through SwiftShader).
  apt_install mesa-vulkan-drivers libvulkan1 chromium
}

lint() {
  wasm_target
  for c in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$c" || { log "rustup component add $c"; rustup component add "$c"; }
  done
  log "cargo fmt --check"
  cargo fmt --all --check
  log "cargo clippy (native: every crate, every target)"
  cargo clippy --workspace --all-targets -- -D warnings
  log "cargo clippy (wasm32: the core and the web façade, as the browser builds them)"
  cargo clippy -p ctxr -p ctxr-web --target wasm32-unknown-unknown -- -D warnings
  # The CPU-only build of the page's engine (no WebGPU stack).
  cargo clippy -p ctxr-web --no-default-features --target wasm32-unknown-unknown -- -D warnings
  # The training step is in the core so that the page can adapt models: it must build for wasm.
  cargo clippy -p ctxr --features train --target wasm32-unknown-unknown -- -D warnings
}

run_tests() {
  test_deps
  # The Vulkan loader complains on every adapter probe without a runtime dir.
  if [ -z "${XDG_RUNTIME_DIR:-}" ]; then export XDG_RUNTIME_DIR="$(mktemp -d)"; fi
  lint
  log "hostile-input corpus → tests/corpus (ctxr corpus)"
  cargo run --release -q -p ctxr-lab --bin ctxr -- corpus --out tests/corpus
  log "cargo test --release"
  cargo test --release --workspace --all-targets
  build_web
  log "browser tests (tests/e2e)"
  node tests/e2e/run.mjs
}

bench() {
  node_deps bench
  build_web
  log "cargo build --release -p ctxr-lab (ctxr export-onnx)"
  cargo build --release -q -p ctxr-lab --bin ctxr
  mkdir -p target/bench/onnx
  for m in cxr ct; do target/release/ctxr export-onnx --model "$m" --out "target/bench/onnx/$m.onnx"; done
  log "speed benchmark (tests/e2e/bench-infer.mjs)"
  test_deps
  node tests/e2e/bench-infer.mjs "$@"
}

case "${1:-build}" in
  build) build_web ;;
  serve) build_web; node tests/e2e/server.mjs www "${PORT:-8080}" ;;
  lint) lint ;;
  test) run_tests ;;
  bench) shift; bench "$@" ;;
  *) echo "usage: $0 [build|serve|lint|test|bench]" >&2; exit 2 ;;
esac
