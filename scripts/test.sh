#!/usr/bin/env bash
# The README's test command (and what .ci/run calls): install what the tests need, then run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."

python -m pip install -q -r requirements-dev.txt

# The browser test drives Debian's chromium through Playwright (no browser download).
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian chromium for the browser test..."
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "chromium is missing: install it (sudo apt-get install chromium) for the browser test" >&2
    exit 1
  fi
fi

# pytest exits 5 when it collects no tests: that must fail, not pass.
set +e
python -m pytest -q "$@"
rc=$?
set -e
if [ "$rc" = "5" ]; then
  echo "pytest collected no tests: failing" >&2
  exit 1
fi
exit "$rc"
