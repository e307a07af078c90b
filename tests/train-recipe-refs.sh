#!/bin/sh
# The training recipe's torch model (data/train/klein_torch.py) against the
# reference vectors: what Bonsai Shapes was trained as must be what the
# engine runs.  Skips (77) without Debian's python3-torch.
set -e
py=${PYTHON:-/usr/bin/python3}
if ! "$py" -c "import torch, numpy" 2>/dev/null; then
  echo "SKIP: no python3-torch"; exit 77
fi
[ -d "$BONSAI_REFS/flux2-mini" ] || { echo "SKIP: no refs at $BONSAI_REFS"; exit 77; }
cd "$(dirname "$0")/../data/train"
exec "$py" -B check_refs.py "$BONSAI_REFS"
