#!/usr/bin/env bash
# Removes everything an earlier test run may have left on this machine, so
# the next run starts as on a fresh one: the tests' folders under the temp
# dir (images, e2e cluster, locks), the e2e cluster's network namespaces,
# veths and bridge, and the sandbox cgroups of agents that died. CI runs it
# before the test command; run it by hand as root, with no agent running. It touches
# nothing outside these names, and never /var/lib/nimbus* (a dev node's data).
set -uo pipefail
cd "$(dirname "$0")/.."
tmp=${TMPDIR:-/tmp}

# The e2e cluster (and any scripts/cluster left up with the defaults):
# `down` stops agents, kills their sandboxes, deletes namespaces and links.
if [ -d "$tmp/nimbus-e2e" ]; then
  NIMBUS_CLUSTER_DIR="$tmp/nimbus-e2e" scripts/cluster down >/dev/null 2>&1 || true
fi
if [ -d "$tmp/nimbus-cluster" ]; then
  NIMBUS_CLUSTER_DIR="$tmp/nimbus-cluster" scripts/cluster down >/dev/null 2>&1 || true
fi
for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^nimbus(-[a-z0-9]+)*-n[0-9]+$'); do
  for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
  ip netns del "$ns" 2>/dev/null || true
done
for link in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | sed 's/@.*//' | grep -E '^nimbus'); do
  ip link del "$link" 2>/dev/null || true
done

# Every sandbox cgroup under /nimbus (run this with no agent running): kill what is
# left in them (thawed first, a frozen task cannot die), then remove them.
for ctl in /sys/fs/cgroup/*/nimbus /sys/fs/cgroup/nimbus; do
  [ -d "$ctl" ] || continue
  for cg in "$ctl"/*/; do
    [ -d "$cg" ] || continue
    cg=${cg%/}
    [ -f "$cg/freezer.state" ] && echo THAWED >"$cg/freezer.state" 2>/dev/null
    [ -f "$cg/cgroup.procs" ] && while read -r p; do kill -KILL "$p" 2>/dev/null || true; done <"$cg/cgroup.procs"
  done
done
for ctl in /sys/fs/cgroup/*/nimbus /sys/fs/cgroup/nimbus; do
  [ -d "$ctl" ] || continue
  for i in $(seq 50); do
    left=0
    for cg in "$ctl"/*/; do
      [ -d "$cg" ] || continue
      rmdir "${cg%/}" 2>/dev/null || left=1
    done
    [ $left -eq 0 ] && break
    sleep 0.1
  done
done

# The tests' folders and locks under the temp dir.
rm -rf "$tmp"/nimbus-* 2>/dev/null || true
echo "clean-machine: no test state left from earlier runs"
