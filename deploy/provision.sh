#!/usr/bin/env bash
# Provisions one nimbus node of the Vagrant cluster (see Vagrantfile), as
# root on Debian 12:  deploy/provision.sh IP CLUSTER_KEY
#
# The binary is built on the host (go build -o bin/ ./cmd/...) and
# reaches the VM through the synced folder /vagrant; nothing is compiled
# here. Installs the runtime dependencies, /usr/local/bin/nimbus (and
# nimbus-init beside it),
# /etc/nimbus/nimbus.env and the systemd unit, and starts the agent. Safe to
# run again (vagrant provision): it installs the current binary and restarts.
#
# nimbus's sandboxes use cgroup v1 controllers (memory, cpu, freezer, pids);
# Debian 12 boots with cgroup v2 only. On the first run the script switches
# the kernel command line to the hybrid hierarchy and reboots the VM a few
# seconds after it returns; the agent starts at that boot.
set -euo pipefail

ip=${1:?usage: provision.sh IP CLUSTER_KEY}
# The cluster's key (nimbus keygen), the same on every node: it encrypts
# gossip and authenticates the calls between nodes.
key=${2:?usage: provision.sh IP CLUSTER_KEY (a key from nimbus keygen, the same on every node)}
src=${NIMBUS_SRC:-/vagrant}
[[ $ip =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ ]] || { echo "provision: bad IP '$ip'" >&2; exit 1; }

if [ ! -x "$src/bin/nimbus" ]; then
  echo "provision: $src/bin/nimbus is missing. On the host, in the repo:" >&2
  echo "  go build -o bin/ ./cmd/... && vagrant rsync && vagrant provision" >&2
  exit 1
fi
if ! "$src/bin/nimbus" --help >/dev/null 2>&1; then
  echo "provision: $src/bin/nimbus does not run here (build it on a linux/amd64 host whose glibc is not newer than Debian 12's)" >&2
  exit 1
fi

# Runtime dependencies: the default sandbox image is assembled from the
# host's /bin/sh, coreutils, curl, grep, sed, awk, tar, gzip, find, xargs.
need=()
for pair in curl:curl ip:iproute2 ldd:libc-bin grep:grep sed:sed awk:mawk tar:tar gzip:gzip find:findutils xargs:findutils; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair##*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends ca-certificates "${need[@]}"
fi

install -m 0755 "$src/bin/nimbus" /usr/local/bin/nimbus
# The sandboxes' container init, found beside the agent's binary (without
# it the agent is its own, at about twice the CPU per sandbox start).
if [ -x "$src/bin/nimbus-init" ]; then
  install -m 0755 "$src/bin/nimbus-init" /usr/local/bin/nimbus-init
else
  echo "provision: $src/bin/nimbus-init is missing (go build -o bin/ ./cmd/... builds it): each sandbox start will cost more CPU" >&2
fi
install -d -m 0700 /var/lib/nimbus
install -d -m 0755 /etc/nimbus
umask 077
{
  echo "# Written by deploy/provision.sh; read by nimbus.service."
  echo "NIMBUS_IP=$ip"
  echo "NIMBUS_AGENT_FLAGS=\"--encrypt $key\""
} >/etc/nimbus/nimbus.env
umask 022
install -m 0644 "$src/deploy/nimbus.service" /etc/systemd/system/nimbus.service
systemctl daemon-reload
systemctl enable nimbus.service

if [ ! -d /sys/fs/cgroup/memory ] || [ ! -d /sys/fs/cgroup/freezer ]; then
  install -d /etc/default/grub.d
  cat >/etc/default/grub.d/nimbus-cgroup-v1.cfg <<'CFG'
# nimbus's sandboxes need the cgroup v1 controllers (deploy/provision.sh).
GRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX systemd.unified_cgroup_hierarchy=0"
CFG
  update-grub
  echo "provision: cgroup v1 enabled on the kernel command line; rebooting in 5 s (nimbus starts at boot)"
  systemd-run --on-active=5s --timer-property=AccuracySec=1s /bin/systemctl reboot
  exit 0
fi

systemctl restart nimbus.service
echo "provision: nimbus agent on $ip:8700, Lambda REST API on http://$ip:9000 (journalctl -u nimbus)"
