#!/usr/bin/env bash
# A real browser for the UI test: Debian's chromium (Playwright drives it; no browser is
# downloaded). Use: `source .ci/browser.sh`; the UI test then fails instead of skipping
# when no browser is found, and saves its screenshots under test-artifacts/.
set -euo pipefail

if ! command -v chromium >/dev/null; then
  echo "[ci] installing chromium"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
export PERFSMITH_REQUIRE_BROWSER=1
export PERFSMITH_TEST_ARTIFACTS="${PERFSMITH_TEST_ARTIFACTS:-$PWD/test-artifacts}"
echo "[ci] $(chromium --version 2>/dev/null | head -n 1); screenshots in $PERFSMITH_TEST_ARTIFACTS"
