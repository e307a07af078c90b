#!/bin/sh
# trixie-root.sh ensure|run CMD…|test — a Debian 13 (trixie) root with
# GIMP 3.0 and libgimp-3.0-dev, for the GIMP 3.0 front-end and its tests on
# a Debian 12 machine, whose own GIMP is 2.10.
#
#   ensure   make the root, or bring it up to date; print its path
#   run      run CMD inside the root: the source tree at /ci/src, the
#            reference vectors (../shared beside it) at /ci/shared, in a
#            private mount namespace so nothing stays mounted afterwards
#   test     ensure, then build the project inside the root (build folder
#            /ci/build, kept with the root) and run its GIMP test suite
#
# The root is made once with debootstrap and reused: it lives under
# $BONSAI_CI_CACHE (default /var/cache/bonsai-image-ci)/trixie and carries a
# stamp of the package list it was made with; a different list installs the
# difference, a root without a stamp (an interrupted run) is made again.
# A cold start costs about 1 GB of downloads' worth of packages and a minute
# or two on a fast mirror.  Needs root (chroot, mount); exits 77 otherwise.
set -eu

mirror=${BONSAI_DEBIAN_MIRROR:-http://deb.debian.org/debian}
cache=${BONSAI_CI_CACHE:-/var/cache/bonsai-image-ci}
root=$cache/trixie
src=$(cd "$(dirname "$0")/../.." && pwd)
shared=$(cd "$src/.." && pwd)/shared
# Build tools and the engine's libraries as tools/install-deps.sh installs
# them on the host, GIMP 3.0, gettext for the catalogues, a German locale
# for the translation test (this glibc ignores LANGUAGE under C.UTF-8), and
# Xvfb with xwd for the dialog screenshot.
packages="gimp libgimp-3.0-dev gcc meson ninja-build pkg-config libglib2.0-dev
libjson-glib-dev libpng-dev libcurl4-openssl-dev gettext locales xvfb x11-apps"
stamp="trixie-2 $(echo $packages)"

[ "$(id -u)" = 0 ] || { echo "trixie-root: needs root (chroot and mount)"; exit 77; }
for tool in debootstrap unshare chroot flock; do
  command -v $tool >/dev/null || { echo "trixie-root: $tool is not installed"; exit 77; }
done
# A container may forbid mounting: then there is no root to run in.
unshare --mount --propagation private true 2>/dev/null \
  || { echo "trixie-root: this system does not allow a private mount namespace"; exit 77; }

inside () {
  chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/ci/home \
    LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"
}

ensure () {
  mkdir -p "$cache"
  # One run at a time makes or changes the root.
  exec 9>"$cache/trixie.lock"
  flock 9
  if [ -f "$root/.bonsai-stamp" ] && [ "$(cat "$root/.bonsai-stamp")" = "$stamp" ]; then
    flock -s 9
    return
  fi
  if [ ! -f "$root/.bonsai-stamp" ]; then
    rm -rf "$root"
    echo "trixie-root: debootstrap into $root"
    debootstrap --variant=minbase trixie "$root" "$mirror" >"$cache/debootstrap.log" 2>&1 || {
      tail -n 20 "$cache/debootstrap.log"
      echo "trixie-root: debootstrap failed (log: $cache/debootstrap.log)"
      exit 1
    }
  fi
  echo "trixie-root: installing $(echo $packages)"
  # shellcheck disable=SC2086
  if ! { inside apt-get update -qq && inside apt-get install -y -qq --no-install-recommends $packages; } \
       >"$cache/apt.log" 2>&1; then
    tail -n 20 "$cache/apt.log"
    echo "trixie-root: apt-get failed (log: $cache/apt.log)"
    exit 1
  fi
  inside apt-get clean
  inside localedef -i de_DE -f UTF-8 de_DE.UTF-8
  mkdir -p "$root/ci/src" "$root/ci/shared" "$root/ci/home"
  echo "$stamp" >"$root/.bonsai-stamp"
  # Runs inside the root only read it: they share the lock.
  flock -s 9
}

run () {
  if ! { true >&9; } 2>/dev/null; then
    exec 9>"$cache/trixie.lock"
    flock -s 9
  fi
  [ -f "$root/.bonsai-stamp" ] || { echo "trixie-root: no root yet (run: $0 ensure)"; exit 1; }
  [ -d "$shared" ] || shared=$root/ci/shared
  unshare --mount --propagation private sh -c '
    root=$1 src=$2 shared=$3; shift 3
    mount --bind "$src" "$root/ci/src" &&
    mount --bind "$shared" "$root/ci/shared" &&
    mount -t proc proc "$root/proc" &&
    exec chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/ci/home \
      LANG=C.UTF-8 "$@"' sh "$root" "$src" "$shared" "$@"
}

case ${1:-} in
  ensure)
    ensure
    echo "$root"
    ;;
  run)
    shift
    run "$@"
    ;;
  test)
    ensure
    run sh -c '
      [ -f /ci/build/build.ninja ] || meson setup /ci/build /ci/src --werror --buildtype=release \
        -Dgimp=enabled >/ci/setup.log 2>&1 || { cat /ci/setup.log; exit 1; }
      ninja -C /ci/build >/ci/ninja.log 2>&1 || { tail -n 40 /ci/ninja.log; exit 1; }
      meson test -C /ci/build --suite gimp --print-errorlogs --num-processes 1'
    ;;
  *)
    echo "usage: $0 ensure|run CMD…|test" >&2
    exit 2
    ;;
esac
