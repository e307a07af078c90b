#!/bin/sh
# cli-info.sh BONSAI_IMAGE — `bonsai-image info` as users run it: on the
# reference files, on small MLX packs made here byte by byte (with and
# without quantization_config.json, and as a release-like folder of parts),
# and on damaged files, which must give exit status 1 and a message naming
# the file, never a crash.
set -u
bin=$1
refs=${BONSAI_REFS:-}
work=${BONSAI_TEST_TMP:-/tmp}/cli-info
rm -rf "$work"
mkdir -p "$work" || exit 1
failures=0

fail () {
  echo "FAIL: $*"
  failures=$((failures + 1))
}

# run NAME ARGS...: runs `info ARGS`, output in $work/NAME.out/.err, status in $rc
run () {
  name=$1; shift
  "$bin" info "$@" >"$work/$name.out" 2>"$work/$name.err"
  rc=$?
}

# expect NAME PATTERN: the output of run NAME has a line matching PATTERN
expect () {
  grep -q -e "$2" "$work/$1.out" "$work/$1.err" || {
    fail "$1: no line matching '$2'"
    sed 's/^/  | /' "$work/$1.out" "$work/$1.err" | head -n 40
  }
}

# Eight bytes, little-endian.
le64 () {
  n=$1; i=0
  while [ $i -lt 8 ]; do
    printf "\\$(printf '%03o' $((n % 256)))"
    n=$((n / 256)); i=$((i + 1))
  done
}

# A ternary MLX pack as the release lays it out: blk.to_q is [2, 128]
# (codes U32 [2, 8], bf16 scales 1.0 and biases -1.0 [2, 1]) beside a dense
# bf16 x.weight [2, 2].
write_pack () {
  h='{"blk.to_q.weight":{"dtype":"U32","shape":[2,8],"data_offsets":[0,64]},'
  h=$h'"blk.to_q.biases":{"dtype":"BF16","shape":[2,1],"data_offsets":[64,68]},'
  h=$h'"blk.to_q.scales":{"dtype":"BF16","shape":[2,1],"data_offsets":[68,72]},'
  h=$h'"x.weight":{"dtype":"BF16","shape":[2,2],"data_offsets":[72,80]}}'
  while [ $((${#h} % 8)) -ne 0 ]; do h="$h "; done
  {
    le64 ${#h}
    printf '%s' "$h"
    head -c 64 /dev/zero
    printf '\200\277\200\277\200\077\200\077\200\077\200\077\200\077\200\077'
  } >"$1"
}

# A packed layer with its quantization_config.json.
mkdir -p "$work/release/transformer-packed-mflux" "$work/release/tokenizer" "$work/noconf"
write_pack "$work/release/transformer-packed-mflux/diffusion_pytorch_model.safetensors"
printf '{"bits": 2, "group_size": 128, "solver": "ternary", "skip_patterns": ["x"]}\n' \
  >"$work/release/transformer-packed-mflux/quantization_config.json"
run pack "$work/release/transformer-packed-mflux"
[ $rc -eq 0 ] || fail "pack: exit status $rc"
expect pack '^quantization: 2-bit, group 128, ternary (quantization_config.json)'
expect pack '^blk.to_q.weight  *U32  *\[2, 8\]  *64  low-bit 2-bit g128 ternary \[2, 128\] 2.250 bits/weight'
expect pack '^blk.to_q.scales  *BF16  *\[2, 1\] .*(scales of low-bit blk.to_q)'
expect pack '^x.weight  *BF16  *\[2, 2\]  *8$'
expect pack '^tensors: 4 (80 bytes)'
expect pack '^low-bit linears: 1 (3 tensors, 72 bytes): 1 x 2-bit g128 ternary; 2.250 bits/weight'
expect pack '^dense tensors: 1 (8 bytes)'

# Without a config, bits and group size are ambiguous: reported as a product.
write_pack "$work/noconf/pack.safetensors"
run noconf "$work/noconf/pack.safetensors"
[ $rc -eq 0 ] || fail "noconf: exit status $rc"
expect noconf 'low-bit bits\*group = 256 (2-bit g128, 4-bit g64, 8-bit g32)'

# A config that contradicts the shapes is reported, not believed.
mkdir -p "$work/mismatch"
write_pack "$work/mismatch/model.safetensors"
printf '{"bits": 1, "group_size": 128}' >"$work/mismatch/quantization_config.json"
run mismatch "$work/mismatch"
[ $rc -eq 0 ] || fail "mismatch: exit status $rc"
expect mismatch 'low-bit blk.to_q: does not match quantization_config.json (1-bit, group 128)'

# A release-like folder: each part summarised, folders without models skipped.
printf '{}' >"$work/release/tokenizer/tokenizer.json"
if [ -n "$refs" ] && [ -f "$refs/flux2-mini/vae_weights.safetensors" ]; then
  mkdir -p "$work/release/vae"
  cp "$refs/flux2-mini/vae_weights.safetensors" "$work/release/vae/diffusion_pytorch_model.safetensors"
  parts=2
else
  parts=1
fi
run release "$work/release"
[ $rc -eq 0 ] || fail "release: exit status $rc"
expect release "^all $parts parts: "
expect release '^== .*transformer-packed-mflux/diffusion_pytorch_model.safetensors'
expect release '^low-bit linears: 1 '
if grep -q 'blk.to_q.weight' "$work/release.out"; then fail "release: listed tensors without --tensors"; fi

# The reference files.
if [ -n "$refs" ] && [ -f "$refs/flux2-mini/dit_weights.safetensors" ]; then
  run dit "$refs/flux2-mini/dit_weights.safetensors"
  [ $rc -eq 0 ] || fail "dit: exit status $rc"
  expect dit '^context_embedder.weight  *F32  *\[64, 24\]  *6144$'
  expect dit '^tensors: 49 (1662464 bytes'
  expect dit '^dense tensors: 49 '
  run qwen3 --summary "$refs/qwen3-mini/qwen3_io.safetensors"
  [ $rc -eq 0 ] || fail "qwen3: exit status $rc"
  expect qwen3 '^tensors: 11 '
  run qwen3-list "$refs/qwen3-mini/qwen3_io.safetensors"
  expect qwen3-list '^input_ids  *I64  *\[16\]  *128$'
  run realdims "$refs/flux2-realdims/dit_weights.safetensors"
  expect realdims '^context_embedder.weight  *F16  *\[256, 7680\]'
  # Damaged: cut short.
  head -c 1000 "$refs/flux2-mini/dit_weights.safetensors" >"$work/cut.safetensors"
  run cut "$work/cut.safetensors"
  [ $rc -eq 1 ] || fail "cut: exit status $rc, expected 1"
  expect cut "^bonsai-image: .*cut.safetensors: .*truncated"
fi

# Damaged: a header length of 100 MB, a header that is not JSON, a missing
# file, an empty folder.
{ le64 104857600; printf '{}'; } >"$work/huge.safetensors"
run huge "$work/huge.safetensors"
[ $rc -eq 1 ] || fail "huge: exit status $rc, expected 1"
expect huge '^bonsai-image: .*huge.safetensors: the header length field says 104857600 bytes'
{ le64 8; printf '{"a":[]]'; } >"$work/garbled.safetensors"
run garbled "$work/garbled.safetensors"
[ $rc -eq 1 ] || fail "garbled: exit status $rc, expected 1"
expect garbled '^bonsai-image: .*garbled.safetensors: the header is not valid JSON'
run missing "$work/missing.safetensors"
[ $rc -eq 1 ] || fail "missing: exit status $rc, expected 1"
expect missing '^bonsai-image: cannot open .*missing.safetensors'
mkdir -p "$work/empty"
run empty "$work/empty"
[ $rc -eq 1 ] || fail "empty: exit status $rc, expected 1"
expect empty '^bonsai-image: .*empty: no safetensors model'
# A damaged part fails the folder but the other parts are still reported.
mkdir -p "$work/release/broken"
cp "$work/huge.safetensors" "$work/release/broken/model.safetensors"
run release-broken "$work/release"
[ $rc -eq 1 ] || fail "release-broken: exit status $rc, expected 1"
expect release-broken 'broken/model.safetensors: the header length field'
expect release-broken '^== .*transformer-packed-mflux'
# Usage errors.
run usage
[ $rc -eq 2 ] || fail "usage: exit status $rc, expected 2"
expect usage '^Usage: bonsai-image info'

if [ $failures -ne 0 ]; then
  echo "$failures checks failed"
  exit 1
fi
echo "all checks passed"
