#!/usr/bin/env bash
# Set up the workspace on a fresh machine: install uv if missing, then every package from the lock.
#   ./scripts/bootstrap.sh            set up only
#   ./scripts/bootstrap.sh demo       set up, then run `uv run data-platform demo`
#   ./scripts/bootstrap.sh <cmd...>   set up, then run `uv run <cmd...>`
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION="0.13.9"
if ! command -v uv >/dev/null 2>&1; then
  echo "bootstrap: installing uv ${UV_VERSION} with pip" >&2
  python3 -m pip install --quiet --user "uv==${UV_VERSION}" 2>/dev/null \
    || python3 -m pip install --quiet "uv==${UV_VERSION}"
  # pip --user puts scripts in the user base, which a fresh shell may not have on PATH.
  PATH="$(python3 -m site --user-base)/bin:${PATH}"
  export PATH
fi

uv sync --frozen --quiet
# dagster-dbt needs the dbt manifest before the transformation location can load.
uv run --frozen python -m transformation.project prepare >/dev/null

if [ "$#" -gt 0 ]; then
  if [ "$1" = "demo" ]; then
    shift
    exec uv run --frozen data-platform demo "$@"
  fi
  exec uv run --frozen "$@"
fi
echo "bootstrap: ready. Next: uv run data-platform demo" >&2
