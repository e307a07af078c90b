#!/bin/sh
# install-catalogues.sh PO_BUILD_DIR PLUG_IN_DIR — copies the compiled
# catalogues (PO_BUILD_DIR/LANG/LC_MESSAGES/bonsai-image.mo, or LANG.mo)
# into PLUG_IN_DIR/locale/LANG/LC_MESSAGES/, where the plug-ins look.
# Under `meson install` the folder is put below $DESTDIR.
set -eu
po=$1
dir=${DESTDIR:-}$2
find "$po" -name '*.mo' | while read -r mo; do
  case $mo in
    */LC_MESSAGES/bonsai-image.mo) lang=$(basename "$(dirname "$(dirname "$mo")")") ;;
    *) lang=$(basename "$mo" .mo) ;;
  esac
  mkdir -p "$dir/locale/$lang/LC_MESSAGES"
  install -m 644 "$mo" "$dir/locale/$lang/LC_MESSAGES/bonsai-image.mo"
done
