#!/usr/bin/env bash
# Set up the workspace on a fresh machine: install uv if missing, then every package from the lock.
#   ./scripts/bootstrap.sh            set up only
#   ./scripts/bootstrap.sh demo       set up, then run `uv run data-platform demo`
#   ./scripts/bootstrap.sh <cmd...>   set up, then run `uv run <cmd...>`
#
# uv goes where uv's own installer puts it, ~/.local/bin, which a new login shell has on its PATH
# (Debian's and Ubuntu's ~/.profile add it when it exists). The shell you ran this from does not
# see it until you run: export PATH="$HOME/.local/bin:$PATH"
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION="0.13.9"
UV_BIN_DIR="${HOME}/.local/bin"

say() { echo "bootstrap: $*" >&2; }

install_uv() {
  say "uv not found: installing uv ${UV_VERSION} from PyPI into ${UV_BIN_DIR} (about 20 MB)"
  if ! python3 -m pip --version >/dev/null 2>&1; then
    say "python3 has no pip; install uv yourself (https://docs.astral.sh/uv/getting-started/installation/) and run this script again"
    exit 1
  fi
  # The uv wheel is one self-contained binary that touches no system package, so a --user
  # install is safe on distributions that mark their Python as externally managed (PEP 668);
  # older pips ignore the variable.
  PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --user --progress-bar on "uv==${UV_VERSION}"
  local user_bin
  user_bin="$(python3 -m site --user-base)/bin"
  # pip's user scripts folder is ~/.local/bin on Linux but not on macOS: link uv where a new
  # shell (and the next bootstrap) finds it.
  if [ "${user_bin}" != "${UV_BIN_DIR}" ]; then
    mkdir -p "${UV_BIN_DIR}"
    ln -sf "${user_bin}/uv" "${UV_BIN_DIR}/uv"
  fi
}

if ! command -v uv >/dev/null 2>&1; then
  # A previous bootstrap may have installed uv where this shell does not look yet.
  if [ ! -x "${UV_BIN_DIR}/uv" ]; then
    install_uv
  fi
  UV_NOT_ON_PATH=1
  PATH="${UV_BIN_DIR}:${PATH}"
  export PATH
fi
say "using $(uv --version) at $(command -v uv)"

say "installing the workspace from uv.lock (the first time downloads about 1.2 GB: a few minutes)"
# Bytecode compiled once at install: every later process (dbt, code servers, runs) then skips
# compiling what it imports, which costs seconds per process where no .pyc can be written.
uv sync --frozen --compile-bytecode
# dagster-dbt needs the dbt manifest before the transformation location can load.
say "parsing the dbt project (dbt/target/manifest.json)"
uv run --frozen python -m transformation.project prepare >/dev/null

if [ -n "${UV_NOT_ON_PATH:-}" ]; then
  say "uv is in ${UV_BIN_DIR}, which this shell's PATH lacks; run this once here (a new login shell has it):"
  say '  export PATH="$HOME/.local/bin:$PATH"'
fi

if [ "$#" -gt 0 ]; then
  if [ "$1" = "demo" ]; then
    shift
    exec uv run --frozen data-platform demo "$@"
  fi
  exec uv run --frozen "$@"
fi
say "ready. Next: uv run data-platform demo (about 12 s on 2 quiet cores), then uv run data-platform ui"
