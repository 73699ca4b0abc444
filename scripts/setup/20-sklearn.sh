#!/usr/bin/env bash
# scikit-learn (and numpy) in the project venv: the oracle for harombe-ml's Isolation Forest.
# Needs scripts/setup/10-python.sh first (the venv at $HAROMBE_PEERS/venv). Idempotent.
set -euo pipefail
venv="$HAROMBE_PEERS/venv"
if [ ! -x "$venv/bin/python" ]; then
  echo "20-sklearn.sh: no venv at $venv; run scripts/setup/10-python.sh first" >&2
  exit 1
fi
if ! "$venv/bin/python" -c 'import sklearn, numpy' 2>/dev/null; then
  "$venv/bin/python" -m pip install --quiet 'scikit-learn>=1.3' 'numpy>=1.24'
fi
"$venv/bin/python" -c 'import sklearn, numpy; print("scikit-learn", sklearn.__version__, "numpy", numpy.__version__)'
