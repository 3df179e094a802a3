#!/usr/bin/env bash
# Installs the Debian packages the product, its demo, tests, benchmarks and image build run,
# only when something is missing. test/unit/system-deps.test.ts reads the `provide` lines:
# every program the code spawns must be listed here (or be part of the base system).
set -euo pipefail

need=()
# provide <package> <program-or-path>...: the programs the project runs from that package.
provide() {
  local pkg="$1" p
  shift
  for p in "$@"; do
    if ! command -v "$p" >/dev/null 2>&1 && [ ! -e "$p" ]; then
      need+=("$pkg")
      return
    fi
  done
}
provide iptables iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore \
  iptables-nft iptables-nft-save iptables-nft-restore ip6tables-nft ip6tables-nft-save ip6tables-nft-restore \
  iptables-legacy iptables-legacy-save iptables-legacy-restore ip6tables-legacy ip6tables-legacy-save ip6tables-legacy-restore
provide iproute2 ip ss
provide bind9-dnsutils dig
provide ipset ipset
provide nftables nft
provide podman podman
provide runc runc
provide containernetworking-plugins /usr/lib/cni/bridge /usr/lib/cni/host-local /usr/lib/cni/loopback
provide iperf3 iperf3
provide stunnel4 stunnel4
provide conntrack conntrack
provide tcpdump tcpdump
provide tshark tshark
provide busybox-static /bin/busybox busybox
provide nghttp2-client nghttp h2load
provide nghttp2-server nghttpd
provide g++ g++
provide gcc gcc
provide make make
provide openssl openssl
provide util-linux nsenter setpriv prlimit
provide mount umount mount
provide gnuplot-nox gnuplot
provide time /usr/bin/time
provide git git
provide binutils strip
provide python3-minimal /usr/bin/python3
provide mmdebstrap mmdebstrap
if ! /usr/bin/python3 -c 'import h2' >/dev/null 2>&1; then need+=(python3-h2); fi

if [ "${#need[@]}" -gt 0 ]; then
  echo "installing Debian packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # wireshark-common (pulled in by tshark) asks whether non-root users may capture; answer
  # "no" up front so the install never stops at a prompt.
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# Not Debian packages: the machine's toolchain. Say what is missing instead of failing later.
if ! command -v kubectl >/dev/null 2>&1; then
  echo "warning: kubectl (v1.27+, with its built-in kustomize) is not on PATH: the deploy/ rendering tests will fail" >&2
fi
