#!/bin/sh
# po-check.sh SOURCE_ROOT — the catalogues of the GIMP plug-ins are whole
# and sound: every source that marks strings is in po/POTFILES, the template
# holds exactly the strings the sources mark, and each language of
# po/LINGUAS translates every one of them (none empty or fuzzy) with
# matching formats and mnemonics (msgfmt --check).  Exit 77 without
# gettext's tools.
set -u
cd "$1" || exit 1
for tool in xgettext msgfmt msgcmp; do
  command -v $tool >/dev/null || { echo "$tool is not installed"; exit 77; }
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0

fail () {
  echo "FAIL: $*"
  failures=$((failures + 1))
}

for f in $(grep -l -E '(^|[^A-Za-z0-9_])N?_ ?\(' gimp/*.c gimp/*/*.c); do
  grep -qx "$f" po/POTFILES || fail "$f marks strings but is not in po/POTFILES"
done
xgettext --from-code=UTF-8 --keyword=_ --keyword=N_ --files-from=po/POTFILES \
  -o "$tmp/fresh.pot" || fail "xgettext could not read po/POTFILES' sources"
msgcmp --use-untranslated po/bonsai-image.pot "$tmp/fresh.pot" >"$tmp/log" 2>&1 \
  && msgcmp --use-untranslated "$tmp/fresh.pot" po/bonsai-image.pot >>"$tmp/log" 2>&1 \
  || { fail "po/bonsai-image.pot differs from the sources (ninja bonsai-image-pot):"; sed 's/^/  | /' "$tmp/log"; }
for lang in $(cat po/LINGUAS); do
  po=po/$lang.po
  [ -f "$po" ] || { fail "$po is missing"; continue; }
  msgfmt --check --check-accelerators=_ --statistics -o /dev/null "$po" >"$tmp/log" 2>&1 \
    || { fail "$po does not compile:"; sed 's/^/  | /' "$tmp/log"; }
  grep -q -E 'fuzzy|untranslated' "$tmp/log" && fail "$po: $(cat "$tmp/log")"
  msgcmp "$po" "$tmp/fresh.pot" >"$tmp/log" 2>&1 \
    || { fail "$po lacks translations:"; sed 's/^/  | /' "$tmp/log"; }
done
for lang in de es fr; do
  grep -qx "$lang" po/LINGUAS || fail "po/LINGUAS lacks $lang"
done

[ $failures -eq 0 ] && echo "gimp-po: all passed"
exit $((failures > 0))
