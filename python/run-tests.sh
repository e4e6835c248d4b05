#!/usr/bin/env bash
# Install the Python package clattn from this source tree (pip install .) into a fresh virtual
# environment, then run its pytest suite from outside the tree, so that the installed package is
# what the tests import. Arguments go to pytest. The environment goes in $CLATTN_TEST_VENV
# (default build-python/venv). Tests of optional packages (torch, pyopencl) skip, saying why,
# unless they are installed there: $CLATTN_TEST_VENV/bin/pip install torch pyopencl.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${CLATTN_TEST_VENV:-$root/build-python/venv}

python3 -m venv "$venv"
"$venv/bin/pip" install --quiet "$root" pytest
cd "$(mktemp -d)"
exec "$venv/bin/python" -m pytest -p no:cacheprovider -rs "$root/python/tests" "$@"
