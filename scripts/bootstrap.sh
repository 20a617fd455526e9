#!/usr/bin/env bash
# Create .venv with Python >= 3.13 and install the project (editable, with the dev and ray extras).
# Idempotent: does nothing when .venv already matches setup.cfg and pyproject.toml.
# Set PYTHON=/path/to/python3.13 to choose the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."

is_new_enough() { "$1" -c 'import sys; sys.exit(sys.version_info[:2] < (3, 13))' >/dev/null 2>&1; }

find_python() {
  local candidate
  for candidate in "${PYTHON:-}" python3.13 python3; do
    if [ -n "$candidate" ] && command -v "$candidate" >/dev/null 2>&1 && is_new_enough "$candidate"; then
      command -v "$candidate"; return 0
    fi
  done
  # pyenv installs versions that its shims hide unless selected: look for them directly.
  for candidate in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.1[3-9]*/bin/python3 /usr/local/bin/python3.1[3-9] /usr/bin/python3.1[3-9]; do
    if [ -x "$candidate" ] && is_new_enough "$candidate"; then echo "$candidate"; return 0; fi
  done
  return 1
}

stamp=".venv/.installed-$(cat setup.cfg pyproject.toml | sha256sum | cut -c1-16)"
if [ -x .venv/bin/python ] && [ -f "$stamp" ]; then
  exit 0
fi

if ! python=$(find_python); then
  echo "error: SGAPS needs Python >= 3.13 (nes-py 9 and gym-super-mario-bros 9 require it)." >&2
  echo "Install it (e.g. 'pyenv install 3.13') or run with PYTHON=/path/to/python3.13." >&2
  exit 1
fi
echo "Setting up .venv with $python ($("$python" --version))"
if [ ! -x .venv/bin/python ] || ! is_new_enough .venv/bin/python; then
  rm -rf .venv
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet --progress-bar off -e ".[dev,ray]"
rm -f .venv/.installed-*
touch "$stamp"
echo "Installed: $(.venv/bin/python -c 'import sgaps_env, torch, nes_py; print("sgaps", sgaps_env.__version__, "| torch", torch.__version__)')"
