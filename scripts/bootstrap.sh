#!/usr/bin/env bash
# Creates or refreshes .venv from requirements.lock, the one source of the environment.
#
# Why a script and not `pip install`: pip's resolver backtracks for many minutes on the
# TFX graph, while uv installs the locked graph in under a minute. The venv is rebuilt only
# when the lock file, setup.py or this script changed since it was made (a stamp records
# their hash).
#
# Bytecode is compiled at install time: where PYTHONDONTWRITEBYTECODE is set (as on CI
# images) Python would otherwise recompile TensorFlow's sources at every start, which
# tripled the import time of each run and test process (see docs/performance.md). Only
# what the project's processes import is compiled (scripts/compile_bytecode.py).
set -euo pipefail

cd "$(dirname "$0")/.."
VENV=.venv
STAMP="$VENV/.mlops-lock-stamp"
want_stamp=$(cat requirements.lock setup.py scripts/bootstrap.sh scripts/compile_bytecode.py \
  | sha256sum | cut -d' ' -f1)

if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want_stamp" ]; then
  exit 0
fi

find_python310() {
  # PATH first, then pyenv's versions folder (the `python3.10` pyenv shim fails unless
  # PYENV_VERSION is set, so look for the interpreter itself).
  local candidate
  for candidate in "${MLOPS_PYTHON:-}" python3.10; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 \
        && "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 10)' >/dev/null 2>&1; then
      command -v "$candidate"; return 0
    fi
  done
  local roots=()
  command -v pyenv >/dev/null 2>&1 && roots+=("$(pyenv root)")
  roots+=("${PYENV_ROOT:-$HOME/.pyenv}")
  for root in "${roots[@]}"; do
    for candidate in "$root"/versions/3.10.*/bin/python; do
      if [ -x "$candidate" ]; then echo "$candidate"; return 0; fi
    done
  done
  return 1
}

if ! PY310=$(find_python310); then
  cat >&2 <<'MSG'
error: Python 3.10 was not found.
  TFX 1.16 (the newest TFX that installs on glibc < 2.39) needs Python 3.10.
  Looked for: $MLOPS_PYTHON, `python3.10` on PATH, and $(pyenv root)/versions/3.10.*.
  Install it (for example `pyenv install 3.10.13`) or set MLOPS_PYTHON=/path/to/python3.10.
MSG
  exit 1
fi

if ! command -v uv >/dev/null 2>&1; then
  echo "bootstrap: installing uv (fast installer for the locked environment)" >&2
  "$PY310" -m pip install --quiet --user uv >&2 || python3 -m pip install --quiet uv >&2
  export PATH="$HOME/.local/bin:$PATH"
fi
UV=$(command -v uv || echo "$PY310 -m uv")

echo "bootstrap: building $VENV with $PY310 from requirements.lock" >&2
$UV venv --quiet --allow-existing --python "$PY310" "$VENV"
$UV pip sync --quiet --python "$VENV/bin/python" requirements.lock
"$VENV/bin/python" scripts/compile_bytecode.py \
  "$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
$UV pip install --quiet --python "$VENV/bin/python" --no-deps -e .
echo "$want_stamp" > "$STAMP"
echo "bootstrap: $VENV is ready" >&2
