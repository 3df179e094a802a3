#!/usr/bin/env bash
# One entry point for the README's two set-up commands:
#   bash scripts/dev.sh demo   - install what is missing, build, run the local demo
#   bash scripts/dev.sh test   - install what is missing, build, run the whole test suite
# Must run as root on Debian 12 with Node 20 (namespaces, iptables, podman).
set -euo pipefail
cd "$(dirname "$0")/.."

mode="${1:-}"
shift || true
case "$mode" in
  demo|test) ;;
  *) echo "usage: bash scripts/dev.sh demo|test [args...]" >&2; exit 2 ;;
esac

if [ "$(id -u)" != 0 ]; then
  echo "scripts/dev.sh must run as root: it creates network namespaces and iptables rules" >&2
  exit 2
fi

bash scripts/install-system-deps.sh

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
if [ ! -f native/build/Release/ambient_native.node ]; then
  npm run build:native
fi

case "$mode" in
  demo) exec npm run demo -- "$@" ;;
  test) exec npm test -- "$@" ;;
esac
