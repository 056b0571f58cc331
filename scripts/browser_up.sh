#!/usr/bin/env bash
# browser_up.sh - Debian's chromium and chromium-driver for the dashboard's browser tests (tests/browser.py).
# Idempotent: returns at once when both are installed. Meant to run as root (CI, a fresh Debian 12 machine).
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q chromium chromium-driver
