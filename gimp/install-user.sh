#!/bin/sh
# install-user.sh PO_BUILD_DIR BATCH_SCRIPT VERSION=PLUG_IN… — puts each
# plug-in (VERSION 2.10 or 3.0) with its catalogues into the user's GIMP
# folder ($GIMP2_DIRECTORY or ~/.config/GIMP/2.10, $GIMP3_DIRECTORY or
# ~/.config/GIMP/3.0) as plug-ins/bonsai-image/, and the Script-Fu batch
# script into its scripts/ folder.  `ninja -C BUILD gimp-install-user` runs it.
set -eu
po=$1
script=$2
shift 2
for spec in "$@"; do
  version=${spec%%=*}
  plugin=${spec#*=}
  case $version in
    2.10) base=${GIMP2_DIRECTORY:-$HOME/.config/GIMP/2.10} ;;
    3.0) base=${GIMP3_DIRECTORY:-$HOME/.config/GIMP/3.0} ;;
    *) echo "install-user: unknown GIMP version $version" >&2; exit 2 ;;
  esac
  # GIMP 2.10 sets up its folder on the first start only when it is absent;
  # one made here first would lack the folders GIMP saves its data in.
  if [ "$version" = 2.10 ] && [ ! -d "$base" ]; then
    echo "install-user: $base does not exist yet: start GIMP 2.10 once, then run this again" >&2
    exit 1
  fi
  dir=$base/plug-ins/bonsai-image
  mkdir -p "$dir" "$base/scripts"
  install -m 755 "$plugin" "$dir/bonsai-image"
  "$(dirname "$0")/install-catalogues.sh" "$po" "$dir"
  install -m 644 "$script" "$base/scripts/bonsai-batch.scm"
  echo "GIMP $version: $dir/bonsai-image, $base/scripts/bonsai-batch.scm"
done
