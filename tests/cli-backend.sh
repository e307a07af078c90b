#!/bin/sh
# --backend on generate and edit: an unknown name is a usage error (2); cuda
# without a usable GPU fails with a message naming CUDA before any model is
# opened (1).  The model given does not exist, so reaching it fails with a
# message naming it instead (as it does where a GPU is there).
bin=$1
out=$(mktemp)
trap 'rm -f "$out"' EXIT
fail () { echo "FAIL: $*"; cat "$out"; exit 1; }

"$bin" generate --backend gpu -m /nonexistent -p x -o /dev/null >"$out" 2>&1
[ $? -eq 2 ] || fail "--backend gpu: want exit 2"
grep -q "auto, cpu or cuda" "$out" || fail "--backend gpu: message"

for cmd in generate edit; do
  "$bin" $cmd --backend cuda -m /nonexistent -i /nonexistent.png -p x -o /dev/null >"$out" 2>&1
  [ $? -eq 1 ] || fail "$cmd --backend cuda: want exit 1"
  if grep -q "CUDA" "$out"; then
    grep -q "nonexistent" "$out" && fail "$cmd --backend cuda: model opened first"
  else
    # A GPU is there: the choice is accepted and the missing model reached.
    grep -q "nonexistent" "$out" || fail "$cmd --backend cuda: unexpected failure"
  fi
done

# bench kernels --backend cuda: "no CUDA device" (or, with a GPU, a quick run).
"$bin" bench kernels --backend cuda --quick >"$out" 2>&1
rc=$?
if [ $rc -ne 0 ]; then
  [ $rc -eq 1 ] || fail "bench kernels --backend cuda: want exit 0 or 1"
  grep -q "CUDA" "$out" || fail "bench kernels --backend cuda: message names CUDA"
else
  grep -q "cuBLAS" "$out" || fail "bench kernels --backend cuda: no cuBLAS column"
fi

# check-refs --backend cuda: "no CUDA device" before any set runs (with a GPU
# it runs them, which is not this test's business: it is skipped there).
"$bin" check-refs --backend cuda "$(dirname "$0")" >"$out" 2>&1
rc=$?
if grep -q "no CUDA" "$out"; then
  [ $rc -eq 1 ] || fail "check-refs --backend cuda: want exit 1"
  grep -q "reference sets" "$out" && fail "check-refs --backend cuda: ran sets"
fi
"$bin" check-refs --backend gpu "$(dirname "$0")" >"$out" 2>&1
[ $? -eq 2 ] || fail "check-refs --backend gpu: want exit 2"

# The same through BONSAI_BACKEND for a library user: cpu is accepted and
# the command goes on to fail on the missing model.
BONSAI_BACKEND=cpu "$bin" generate -m /nonexistent -p x -o /dev/null >"$out" 2>&1
grep -q "nonexistent" "$out" || fail "BONSAI_BACKEND=cpu: should reach the model"
echo ok
