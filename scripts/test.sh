#!/usr/bin/env bash
# Set up and run every check: lint, types, and the test suite against real
# redis-server, real models and real video. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test

echo "== ruff"
.venv/bin/ruff check streamer tests tools benchmarks
.venv/bin/ruff format --check streamer tests tools benchmarks
echo "== mypy"
.venv/bin/mypy streamer benchmarks tools/make_docs.py
echo "== pytest"
set +e
.venv/bin/python -m pytest "$@"
status=$?
set -e
if [ "$status" = 5 ]; then
  echo "pytest collected no tests: that is a failure here" >&2
  exit 1
fi
exit "$status"
