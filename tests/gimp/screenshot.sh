#!/bin/sh
# screenshot.sh BUILD_IN_ROOT OUT.xwd — not a test: opens the GIMP 3.0
# dialog of plug-in-bonsai-generate under Xvfb inside the trixie root and
# dumps its window, for docs/gimp3-dialog.png:
#   tests/gimp/trixie-root.sh run /ci/src/tests/gimp/screenshot.sh /ci/build /ci/shot.xwd
#   convert ROOT/ci/shot.xwd docs/gimp3-dialog.png       (ImageMagick, on the host)
# Runs inside the root: Xvfb, gimp-console-3.0 and xwd come from there.
set -u
build=$1
out=$2
tmp=$(mktemp -d)
profile=$tmp/profile
mkdir -p "$profile/plug-ins/bonsai-image"
install -m 755 "$build/gimp/gimp3/bonsai-image" "$profile/plug-ins/bonsai-image/"
"$(dirname "$0")/../../gimp/install-catalogues.sh" "$build/po" "$profile/plug-ins/bonsai-image"
Xvfb :42 -screen 0 1024x900x24 -nolisten tcp >"$tmp/xvfb.log" 2>&1 &
xvfb=$!
sleep 2
# The dialog waits for an answer: GIMP is stopped once the window is dumped.
DISPLAY=:42 GIMP3_DIRECTORY=$profile HOME=$tmp setsid gimp-console-3.0 -i -d -f \
  --batch-interpreter plug-in-script-fu-eval \
  -b '(plug-in-bonsai-generate #:run-mode RUN-INTERACTIVE
        #:prompt "An icy bonsai tree on a mossy rock, morning fog, photo realistic"
        #:width 1024 #:height 768 #:steps 4 #:seed 42 #:model "ternary")' \
  >"$tmp/gimp.log" 2>&1 &
gimp=$!
status=1
for _ in $(seq 60); do
  sleep 1
  if DISPLAY=:42 xwd -silent -name "Bonsai Image" -out "$out" 2>/dev/null; then
    sleep 2  # let it finish drawing
    DISPLAY=:42 xwd -silent -name "Bonsai Image" -out "$out" && status=0
    break
  fi
done
[ $status = 0 ] || { echo "no dialog appeared"; tail -n 20 "$tmp/gimp.log"; }
kill -- "-$gimp" 2>/dev/null  # GIMP and the plug-ins it started
kill "$xvfb" 2>/dev/null
wait 2>/dev/null
rm -rf "$tmp"
exit $status
