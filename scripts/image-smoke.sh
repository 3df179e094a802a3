#!/usr/bin/env bash
# Smoke test of a built image: scripts/image.sh runs it (PODMAN_ARGS selects its private store).
#   bash scripts/image-smoke.sh <image>
# Containers get no network (--network=none) and, where root is needed, only the capabilities
# ztunnel's manifest grants: NET_ADMIN, SYS_ADMIN, NET_RAW.
set -euo pipefail
cd "$(dirname "$0")/.."
image="$1"
# shellcheck disable=SC2086
pm() { podman ${PODMAN_ARGS:-} "$@"; }
run() { pm run --rm --network=none --ulimit nofile=20000:20000 --ulimit nproc=32768:32768 "$@"; }
caps=(--user 0 --cap-drop=all --cap-add=NET_ADMIN,SYS_ADMIN,NET_RAW)

uid=$(run "$image" id -u)
[ "$uid" != 0 ] || { echo "smoke: the image's default user is root" >&2; exit 1; }
echo "smoke: default user is uid $uid"
run "$image" >/dev/null
echo "smoke: the default command (ambientctl --help) runs as that user"
run "$image" node --input-type=module -e "const n = await import('/app/dist/src/native/index.js'); n.currentThreadNetns();"
echo "smoke: the native addon loads"
version=$(echo '{"cniVersion":"1.0.0"}' | run -i -e CNI_COMMAND=VERSION "$image" /app/dist/cni-plugin/ambient-cni)
echo "$version" | grep -q '"supportedVersions"' || { echo "smoke: the CNI plugin's VERSION answer is wrong: $version" >&2; exit 1; }
echo "smoke: the CNI plugin answers VERSION: $version"
run "${caps[@]}" "$image" ambient-selfcheck | sed 's/^/smoke: /'
run "${caps[@]}" -v "$PWD/scripts/image-smoke-node.mjs:/smoke/node.mjs:ro" "$image" node /smoke/node.mjs
echo "smoke: what makes up the image (MB)"
run --user 0 "$image" sh -c 'du -sm /usr/local/bin/node /app/dist/cni-plugin/ambient-cni /app/node_modules /app/dist /app/native /usr/lib /usr/bin /usr/sbin /usr/share /var /etc 2>/dev/null || true' | sed 's/^/    /'
