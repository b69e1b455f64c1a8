# Sourced by scripts/demo and scripts/test: create or reuse .venv and install the project.
#
# torch goes in FIRST, pinned to the wheel this project is tested with (2.13.0); then the
# package with every extra. The install is skipped when .venv already holds an install of
# this exact pyproject.toml (a stamp file keeps its hash), so reruns start in seconds.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    echo "creating .venv with $($PYTHON --version)"
    "$PYTHON" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate

stamp=.venv/.mrl-compress-installed
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    python -m pip install --quiet --upgrade pip
    if ! python -c 'import torch, sys; sys.exit(torch.__version__.split("+")[0] != "2.13.0")' 2>/dev/null; then
        python -m pip install --quiet torch==2.13.0
    fi
    python -m pip install --quiet -e '.[all,dev]'
    echo "$want" > "$stamp"
fi
