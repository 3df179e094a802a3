#!/usr/bin/env bash
# Installs the Debian packages the product and its tests use, only when something is missing.
set -euo pipefail

need=()
check() { # check <command-or-path> <package>
  if ! command -v "$1" >/dev/null 2>&1 && [ ! -e "$1" ]; then need+=("$2"); fi
}
check iptables iptables
check ip iproute2
check ipset ipset
check nft nftables
check podman podman
check runc runc
check /usr/lib/cni/bridge containernetworking-plugins
check iperf3 iperf3
check stunnel4 stunnel4
check conntrack conntrack
check tcpdump tcpdump
check /bin/busybox busybox-static
check nghttp nghttp2-client
check g++ g++
check make make
check openssl openssl
check nsenter util-linux
check gnuplot gnuplot-nox
check tshark tshark
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
