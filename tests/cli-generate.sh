#!/bin/sh
# cli-generate.sh BONSAI_IMAGE — `generate`, `edit` and check-refs' pipeline
# set, run as a user runs them, on the flux2-mini reference model laid out as
# a release folder (prompt features given: it has no text encoder).
# Exit 77 (skipped) without the reference vectors.
set -u
bin=$1
refs=${BONSAI_REFS:-}/flux2-mini
[ -f "$refs/pipeline_io.safetensors" ] || { echo "no reference vectors"; exit 77; }
base=${BONSAI_TEST_TMP:-${TMPDIR:-/tmp}}
mkdir -p "$base"
tmp=$(mktemp -d "$base/cli-generate-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
failures=0

fail () {
  echo "FAIL: $*"
  failures=$((failures + 1))
}

# The model folder: links to the reference weights, copies of the configs.
model=$tmp/model
mkdir -p "$model/transformer" "$model/vae"
ln -s "$refs/dit_weights.safetensors" "$model/transformer/diffusion_pytorch_model.safetensors"
cp "$refs/dit_config.json" "$model/transformer/config.json"
ln -s "$refs/vae_weights.safetensors" "$model/vae/diffusion_pytorch_model.safetensors"
cp "$refs/vae_config.json" "$model/vae/config.json"
feats=$refs/pipeline_io.safetensors
out=$tmp/out
mkdir -p "$out"

# Width and height of a PNG, from its IHDR chunk.
png_size () {
  od -An -tu1 -j16 -N8 "$1" | awk '{ print $1*16777216+$2*65536+$3*256+$4 "x" $5*16777216+$6*65536+$7*256+$8 }'
}

# Runs the command, expecting exit status $1; the rest is the command line.
expect () {
  want=$1
  shift
  "$@" >"$tmp/log" 2>&1
  got=$?
  if [ "$got" != "$want" ]; then
    fail "exit $got, not $want: $*"
    sed 's/^/  | /' "$tmp/log"
  fi
}

expect 0 "$bin" generate -m "$model" --features "$feats" -W 72 -H 64 --seed 3 -o "$out/a.png"
[ "$(head -c 8 "$out/a.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "a.png is not a PNG"
[ "$(png_size "$out/a.png")" = 72x64 ] || fail "a.png is $(png_size "$out/a.png"), not 72x64"
grep -q "seed 3" "$tmp/log" || fail "the seed is not printed"

# The same seed gives the same file, on one thread or two.
expect 0 "$bin" generate -m "$model" --features "$feats" -W 72 -H 64 --seed 3 --threads 1 -o "$out/b.png"
expect 0 "$bin" generate -m "$model" --features "$feats" -W 72 -H 64 --seed 3 --threads 2 -o "$out/c.png"
cmp -s "$out/a.png" "$out/b.png" || fail "seed 3 on 1 thread differs"
cmp -s "$out/a.png" "$out/c.png" || fail "seed 3 on 2 threads differs"
expect 0 "$bin" generate -m "$model" --features "$feats" -W 72 -H 64 --seed 4 -o "$out/d.png"
cmp -s "$out/a.png" "$out/d.png" && fail "seeds 3 and 4 give the same image"

# Without a seed one is drawn and printed.
expect 0 "$bin" generate -m "$model" --features "$feats" -W 64 -H 64 -o "$out/r.png"
grep -q "seed [0-9]" "$tmp/log" || fail "a random seed is not printed"

# Editing: the output takes the input's size unless told otherwise.
expect 0 "$bin" edit -m "$model" --features "$feats" -i "$out/a.png" --seed 1 -o "$out/e.png"
[ "$(png_size "$out/e.png")" = 72x64 ] || fail "e.png is $(png_size "$out/e.png"), not 72x64"
expect 0 "$bin" edit -m "$model" --features "$feats" -i "$out/a.png" -i "$out/d.png" -W 64 -H 80 -o "$out/f.png"
[ "$(png_size "$out/f.png")" = 64x80 ] || fail "f.png is $(png_size "$out/f.png"), not 64x80"

# Refused requests: a message, exit 1, and no file at all.
before=$(ls "$out" | wc -l)
expect 1 "$bin" generate -m "$model" --features "$feats" -W 70 -H 64 -o "$out/bad1.png"
grep -q "width 70 is not a multiple of 8" "$tmp/log" || fail "no message for width 70"
expect 1 "$bin" generate -m "$model" --features "$feats" -W 0 -H 64 -o "$out/bad2.png"
grep -q "width 0" "$tmp/log" || fail "no message for width 0"
expect 1 "$bin" generate -m "$model" --features "$feats" -W 100000 -H 100000 -o "$out/bad3.png"
grep -q "too large" "$tmp/log" || fail "no message for 100000x100000"
expect 1 "$bin" generate -m "$model" --features "$feats" -W 64 -H 64 --steps 0 -o "$out/bad4.png"
grep -q "steps" "$tmp/log" || fail "no message for 0 steps"
expect 1 "$bin" generate -m "$model" -p "a tree" -W 64 -H 64 -o "$out/bad5.png"
grep -q "text encoder" "$tmp/log" || fail "no message for a model without text encoder"
expect 1 "$bin" edit -m "$model" --features "$feats" -i "$tmp/missing.png" -o "$out/bad6.png"
grep -q "missing.png" "$tmp/log" || fail "no message naming the missing input"
expect 1 "$bin" generate -m "$tmp/no-model" --features "$feats" -o "$out/bad7.png"
expect 1 "$bin" generate -m "$model" --features "$feats" -W 64 -H 64 -o "$tmp/no/such/dir/x.png"
[ "$(ls "$out" | wc -l)" = "$before" ] || fail "a refused request left a file: $(ls "$out")"
[ -e "$tmp/no" ] && fail "a folder was created for the output"

# No -m, nothing installed and nothing bundled (a data folder holding only the
# manifest), offline: a clear "not installed" error naming the download, not a
# usage error (generate without -m is allowed: cli-default-model).
mkdir -p "$tmp/data" "$tmp/store" "$tmp/hub"
cp "${G_TEST_SRCDIR:-$(dirname "$0")}/../data/models.json" "$tmp/data/"
if BONSAI_DATA_DIR="$tmp/data" BONSAI_MODELS="$tmp/store" HF_HUB_CACHE="$tmp/hub" \
   HF_HUB_OFFLINE=1 HF_ENDPOINT=http://127.0.0.1:9 \
   "$bin" generate -p "no model" -o "$out/none.png" >"$tmp/none.log" 2>&1; then
  fail "generate without -m and without any model succeeded"
elif ! grep -q "is not installed" "$tmp/none.log" || ! grep -q "bonsai-image download" "$tmp/none.log"; then
  fail "generate without any model does not say what is missing and how to get it"
  sed 's/^/  | /' "$tmp/none.log"
fi
[ -e "$out/none.png" ] && fail "generate without any model wrote a picture"

# Usage errors.
expect 2 "$bin" edit -m "$model" --features "$feats" -o "$out/x.png"
expect 2 "$bin" generate -m "$model" --bogus

# check-refs runs the pipeline set.
expect 0 "$bin" check-refs "$refs"
n=$(grep -c "^flux2-mini/pipeline .* PASS" "$tmp/log")
[ "$n" -ge 5 ] || fail "check-refs passed $n pipeline tensors"
grep "pipeline" "$tmp/log" | grep -q FAIL && fail "check-refs: $(grep FAIL "$tmp/log")"

[ $failures -eq 0 ] && echo "cli-generate: all passed"
exit $((failures > 0))
