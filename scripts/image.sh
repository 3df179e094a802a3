#!/usr/bin/env bash
# Builds deploy/Containerfile without any container registry and smoke-tests the image.
#   sudo bash scripts/image.sh [--keep]     (--keep: leave the private store and print its path)
#
# The base images the Containerfile names (node:20-bookworm, node:20-bookworm-slim) are made
# here with mmdebstrap from the machine's Debian sources, plus this machine's own Node 20 in
# /usr/local (Debian's nodejs is 18), and imported into a private podman store (a temp
# --root/--runroot): the build runs with --pull=never and never touches the machine's store.
# npm ci inside the build reaches the machine's npm registry with its CA through build secrets
# (mounted for that RUN only, never in a layer). Then scripts/image-smoke.sh checks the image.
set -euo pipefail
cd "$(dirname "$0")/.."

keep=false
for a in "$@"; do
  case "$a" in
    --keep) keep=true ;;
    *) echo "usage: bash scripts/image.sh [--keep]" >&2; exit 2 ;;
  esac
done
if [ "$(id -u)" != 0 ]; then
  echo "scripts/image.sh must run as root (mmdebstrap and podman with a private store)" >&2
  exit 2
fi
for c in mmdebstrap podman node npm; do
  command -v "$c" >/dev/null || { echo "image.sh: $c is missing (bash scripts/install-system-deps.sh installs it)" >&2; exit 2; }
done
node_version=$(node --version)
case "$node_version" in
  v20.*) ;;
  *) echo "image.sh: the machine's Node is $node_version; the image needs Node 20" >&2; exit 2 ;;
esac

IMAGE="${AMBIENT_IMAGE:-ambient-node:0.1.0}"
work=$(mktemp -d /var/tmp/ambient-image.XXXXXX)
export AMBIENT_IMAGE_STORE="$work"
pm() { podman --root "$work/root" --runroot "$work/runroot" --storage-driver overlay --cgroup-manager=cgroupfs --events-backend=none "$@"; }

cleanup() {
  local rc=$?
  if [ "$keep" = true ] && [ "$rc" = 0 ]; then
    echo "store kept: podman --root $work/root --runroot $work/runroot images"
    return
  fi
  # Only this store's containers and images (never `system reset`: it also deletes network
  # configs outside the store).
  pm rm -af -t 0 >/dev/null 2>&1 || true
  pm rmi -af >/dev/null 2>&1 || true
  # Whatever podman still has mounted under the store (overlay layers, shm): deepest first.
  awk -v p="$work/" 'index($5, p) == 1 { print $5 }' /proc/self/mountinfo | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

t0=$(date +%s)
stamp() { echo "[image.sh $(( $(date +%s) - t0 ))s] $*"; }

# ---- base images: Debian bookworm (apt variant, merged /usr, no docs or locales) + Node 20 ----
# node is stripped of its debug info (-13 MB, twice: the plugin executable is a copy of it);
# the runtime base gets no npm (nothing runs it there).
npm_root=$(npm root -g)/npm
opts=(--quiet --variant=apt --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr --dpkgopt=force-unsafe-io
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright'
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*'
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias'
  --customize-hook='mkdir -p "$1/usr/local/bin" && strip -o "$1/usr/local/bin/node" /usr/bin/node')
npm_in=(--customize-hook="mkdir -p \"\$1/usr/local/lib/node_modules\" && cp -a $npm_root \"\$1/usr/local/lib/node_modules/npm\""
  --customize-hook='ln -s ../lib/node_modules/npm/bin/npm-cli.js "$1/usr/local/bin/npm"'
  --customize-hook='ln -s ../lib/node_modules/npm/bin/npx-cli.js "$1/usr/local/bin/npx"'
  --customize-hook='mkdir -p "$1/usr/local/include" && cp -a /usr/include/node "$1/usr/local/include/node"')
stamp "making the base images (bookworm + Node $node_version; build: + g++, make, python3, npm, headers)"
mmdebstrap "${opts[@]}" bookworm "$work/slim.tar" >"$work/slim.log" 2>&1 &
slim_pid=$!
mmdebstrap "${opts[@]}" "${npm_in[@]}" --include=g++,make,python3 bookworm "$work/build.tar" >"$work/build.log" 2>&1 || { cat "$work/build.log" >&2; exit 1; }
wait "$slim_pid" || { cat "$work/slim.log" >&2; exit 1; }
pm import --quiet "$work/slim.tar" docker.io/library/node:20-bookworm-slim >/dev/null
pm import --quiet "$work/build.tar" docker.io/library/node:20-bookworm >/dev/null
stamp "base images imported: runtime $(du -m "$work/slim.tar" | cut -f1) MB, build $(du -m "$work/build.tar" | cut -f1) MB"
rm -f "$work/slim.tar" "$work/build.tar"

# ---- npm settings for the build, as secrets (the machine's registry and CA) ----
registry=$(npm config get registry)
cafile=$(npm config get cafile)
[ "$cafile" = null ] || [ "$cafile" = undefined ] && cafile="${NODE_EXTRA_CA_CERTS:-}"
{
  echo "registry=$registry"
  [ -n "$cafile" ] && echo "cafile=/run/secrets/npm-ca"
} >"$work/npmrc"
secrets=(--secret "id=npmrc,src=$work/npmrc")
if [ -n "$cafile" ]; then secrets+=(--secret "id=npm-ca,src=$cafile"); else : >"$work/empty-ca"; secrets+=(--secret "id=npm-ca,src=$work/empty-ca"); fi

stamp "building $IMAGE from deploy/Containerfile"
pm build --quiet --pull=never --network=host --layers=false \
  --ulimit nofile=20000:20000 --ulimit nproc=32768:32768 \
  "${secrets[@]}" \
  -f deploy/Containerfile --ignorefile deploy/Containerfile.dockerignore -t "$IMAGE" . >/dev/null
stamp "built: $(pm image inspect "$IMAGE" --format '{{.Size}}' | awk '{ printf "%.0f MB", $1 / 1e6 }')"

stamp "smoke test"
PODMAN_ARGS="--root $work/root --runroot $work/runroot --storage-driver overlay --cgroup-manager=cgroupfs --events-backend=none" \
  bash scripts/image-smoke.sh "$IMAGE"
stamp "done"
