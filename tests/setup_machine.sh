#!/usr/bin/env bash
# Installs and starts what the tests need when it is missing (Debian, as root):
# - git (the server's smart HTTP backend, and the stock client in the tests);
# - a Docker engine (docker.io, started in the background) and dockyard's base image
#   (scripts/build-base-image.sh, debootstrap) for the Docker executor tests;
# - age (the stock age CLI), to check that a recovery identity decrypts secrets without dockyard;
# - bubblewrap, the local executor's sandbox (tests/security runs jobs that try to escape it);
# - chromium, the browser the dashboard and apps tests (tests/browser, tests/e2e/test_apps.py,
#   Playwright) drive; Playwright never downloads a browser of its own here.
# - postgresql (Debian's, PostgreSQL 15), whose binaries tests/pg.py uses to start a throwaway
#   cluster for the test run (loopback and a socket under the pytest basetemp, stopped at the
#   end): every database test runs on SQLite and PostgreSQL. Debian's package also starts a
#   cluster of its own as a service; the tests never use it (none is started here).
# - iproute2 and iptables: tests/netns.py puts controllers and workers on hosts of their own
#   (network namespaces on a bridge, masqueraded to reach PyPI), tests/e2e/test_hosts.py.
# - npm, and GitHub's published webhook payloads (@octokit/webhooks-examples, pinned) in
#   .cache/npm, which the GitHub webhook tests replay, and GitHub's REST API description
#   (@octokit/openapi, pinned), which tests/githubapi.py checks every request against; each
#   kept when already there (offline).
# Outside CI, a machine without root can still run the tests; the Docker and browser tests then
# skip with a message saying how to enable them (in CI a skipped one is a failure).
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v git >/dev/null || need+=(git)
command -v dockerd >/dev/null || need+=(docker.io)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v age >/dev/null || need+=(age)
command -v bwrap >/dev/null || need+=(bubblewrap)
command -v chromium >/dev/null || need+=(chromium)
command -v npm >/dev/null || need+=(npm)
command -v ip >/dev/null || need+=(iproute2)
command -v iptables >/dev/null || need+=(iptables)
[ -x /usr/lib/postgresql/15/bin/initdb ] || [ -n "${DOCKYARD_TEST_PG_URL:-}" ] || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "tests need: ${need[*]} (install them, then rerun make test)" >&2
    [[ " ${need[*]} " == *" git "* ]] && exit 1
  fi
fi
if command -v dockerd >/dev/null && ! docker info >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "starting dockerd"
  setsid dockerd >/tmp/dockyard-dockerd.log 2>&1 < /dev/null &
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
fi
if docker info >/dev/null 2>&1; then
  scripts/build-base-image.sh
fi
OCTOKIT_EXAMPLES=@octokit/webhooks-examples@7.6.1
if [ ! -f .cache/npm/node_modules/@octokit/webhooks-examples/api.github.com/index.json ]; then
  mkdir -p .cache/npm
  npm install --silent --no-audit --no-fund --prefix .cache/npm "$OCTOKIT_EXAMPLES"
fi
OCTOKIT_OPENAPI=@octokit/openapi@23.0.2
if [ ! -f .cache/npm/node_modules/@octokit/openapi/generated/api.github.com.json ]; then
  mkdir -p .cache/npm
  npm install --silent --no-audit --no-fund --prefix .cache/npm "$OCTOKIT_OPENAPI"
fi
