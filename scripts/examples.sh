#!/usr/bin/env bash
# Builds every example module (examples/*/ with a Cargo.toml) in release mode and copies each
# to examples/<name>/<name>.wasm, next to the app.yaml that deploys it.
#
# Target: the example's own .cargo/config.toml `[build] target` (the event-ABI examples set
# wasm32-unknown-unknown); without one, wasm32-wasip1 (examples/hello, a WASI command).
# cargo reads .cargo/config.toml from the current directory, not from --manifest-path, so
# each example is built from inside its directory, which also applies its rustflags.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
target_dir=$root/target/guests

for manifest in examples/*/Cargo.toml; do
    dir=$(dirname "$manifest")
    name=$(basename "$dir")
    target=wasm32-wasip1
    if [[ -f $dir/.cargo/config.toml ]]; then
        configured=$(sed -n 's/^[[:space:]]*target[[:space:]]*=[[:space:]]*"\([^"]*\)".*/\1/p' \
            "$dir/.cargo/config.toml" | head -n 1)
        target=${configured:-$target}
    fi
    (cd "$dir" && cargo build --release --quiet --target "$target" --target-dir "$target_dir")
    # A bin keeps its name; a cdylib's file name uses underscores for dashes.
    out=$target_dir/$target/release
    for wasm in "$out/$name.wasm" "$out/${name//-/_}.wasm" ""; do
        [[ -n $wasm && -f $wasm ]] && break
    done
    if [[ -z $wasm ]]; then
        echo "examples: no $name.wasm in $out" >&2
        exit 1
    fi
    cp "$wasm" "$dir/$name.wasm"
    printf '%-10s %-24s %7d bytes  %s\n' "$name" "$target" "$(wc -c <"$wasm")" "$dir/$name.wasm"
done
