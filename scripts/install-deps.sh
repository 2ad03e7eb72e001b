#!/usr/bin/env bash
# Installs what building and testing nimbus needs on a Debian machine with Go:
# gcc for cgo (libcontainer's nsenter), curl and the coreutils the default
# sandbox image is assembled from, iproute2 and util-linux (nsenter, flock)
# for the network-namespace cluster, e2fsprogs for the sandboxes' disk-backed
# /tmp, lxcfs for their views of /proc, awscli and python3-boto3 for the REST
# gateway's tests, mmdebstrap for the managed runtimes' images, and the Go
# modules. Safe to run again; installs only what is missing. (The test
# command, scripts/test.sh, also builds the runtime images the tests use and
# AWS's Node.js runtime interface client; the main job needs neither.)
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pair in gcc:gcc curl:curl ip:iproute2 nsenter:util-linux flock:util-linux dpkg:dpkg ldd:libc-bin grep:grep sed:sed awk:mawk tar:tar gzip:gzip find:findutils xargs:findutils; do
  cmd=${pair%%:*} pkg=${pair##*:}
  command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ! -e /usr/include/stdio.h ]; then need+=(libc6-dev); fi
# mkfs.ext4 and debugfs make the template of each sandbox's disk-backed /tmp.
{ [ -x /usr/sbin/mkfs.ext4 ] || [ -x /sbin/mkfs.ext4 ]; } && { [ -x /usr/sbin/debugfs ] || [ -x /sbin/debugfs ]; } || need+=(e2fsprogs)
# lxcfs gives each sandbox its own /proc/meminfo, cpuinfo and uptime
# (sandbox/procviews_linux.go).
command -v lxcfs >/dev/null 2>&1 || need+=(lxcfs)
# Debian's AWS CLI and boto3: the REST gateway's tests drive it with clients
# no one here wrote (the system ones, whatever else is on PATH).
[ -x /usr/bin/aws ] || need+=(awscli)
/usr/bin/python3 -c 'import boto3' >/dev/null 2>&1 || need+=(python3-boto3)
# The managed runtimes' images are built with mmdebstrap (issue 10), as root
# (a user that is not root builds no image, and the runtime tests skip).
if [ "$(id -u)" -eq 0 ]; then command -v mmdebstrap >/dev/null 2>&1 || need+=(mmdebstrap); fi
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing packages: ${need[*]} (run as root to install them)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${need[@]}"
fi
command -v go >/dev/null 2>&1 || export PATH=$PATH:/usr/local/go/bin
go mod download
