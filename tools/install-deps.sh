#!/usr/bin/env bash
# Installs what building and testing Bonsai Image needs on Debian/Ubuntu:
# the compiler and build tools, GLib/json-glib/libpng/libcurl headers, clang's
# libFuzzer runtime, GIMP 2.10 for the plug-in, and the npm packages the
# tokenizer tests compare against.
# Run as root (or through sudo).  Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

packages=(build-essential meson ninja-build pkg-config clang libclang-rt-dev
          libglib2.0-dev libjson-glib-dev libpng-dev libcurl4-openssl-dev)
# The GIMP plug-ins: GIMP 2.10 and its headers, gettext for the catalogues,
# debootstrap for the Debian trixie root the GIMP 3.0 tests run in.
packages+=(gimp libgimp2.0-dev gettext debootstrap)
# The node pack: Debian's Python with its headers, and torch and numpy, as
# ComfyUI runs on them.
packages+=(python3 python3-dev python3-torch python3-numpy)
command -v node >/dev/null && command -v npm >/dev/null || packages+=(nodejs npm)

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null

if [ -f tests/tokenizer/package-lock.json ]; then
  npm ci --prefix tests/tokenizer --no-audit --no-fund --loglevel=error
fi
