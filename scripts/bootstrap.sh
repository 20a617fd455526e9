#!/usr/bin/env bash
# Create .venv with Python >= 3.13 and install the project (editable, with the dev and ray extras).
# Also installs Debian's chromium (for the headless browser test) when missing and running as root with apt-get.
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

# Headless Chromium renders the live server's page in tests/test_browser.py. Checked before the venv's
# early exit so an up-to-date venv still gets it; costs one stat when it is already installed.
ensure_chromium() {
  [ -x /usr/bin/chromium ] && return 0
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "warning: /usr/bin/chromium missing and cannot apt-get install it (needs root + apt); the browser test will be skipped." >&2
    return 0
  fi
  echo "Installing chromium with apt-get (a minute or two)"
  export DEBIAN_FRONTEND=noninteractive
  # Package lists are often empty in fresh containers: refresh them only when apt does not know chromium.
  local apt_log
  apt_log=$(mktemp)
  if ! apt-cache show chromium >/dev/null 2>&1; then
    apt-get update -qq >"$apt_log" 2>&1 || true
  fi
  if apt-get install -y -qq --no-install-recommends chromium >>"$apt_log" 2>&1 && [ -x /usr/bin/chromium ]; then
    echo "Installed: $(/usr/bin/chromium --version 2>/dev/null)"
  else
    echo "warning: apt-get install chromium failed; the browser test will be skipped. Last apt output:" >&2
    tail -n 5 "$apt_log" >&2
  fi
  rm -f "$apt_log"
}
ensure_chromium

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
