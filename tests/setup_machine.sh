#!/usr/bin/env bash
# Installs the system tools the tests need when they are missing (Debian, as root).
# Today: git (the server's smart HTTP backend and the stock client used by the tests).
set -euo pipefail
need=()
command -v git >/dev/null || need+=(git)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && apt-get install -y -qq "${need[@]}"
  else
    echo "tests need: ${need[*]} (install them, then rerun make test)" >&2
    exit 1
  fi
fi
