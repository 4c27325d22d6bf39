#!/usr/bin/env bash
# The data-parallel tests under each MPI a Linux user has, on one machine: Debian 13 roots (debootstrap) with
# Open MPI 5.0.7 (`openmpi-bin`) and MPICH 4.2.1 (`mpich`), the checkout, dotnet and the NuGet cache bind-mounted
# in; the host's own mpirun (Open MPI 4.1.4 on the development VM) is the test command's. As root:
#   tools/mpi-roots.sh setup           build the roots under $ROOTS (default /work/roots; about 600 MB each)
#   tools/mpi-roots.sh test [FILTER]   run the tests of this checkout (built: dotnet build Hybrid.sln) in each root
set -euo pipefail
ROOTS=${ROOTS:-/work/roots}
repo=$(cd "$(dirname "$0")/.." && pwd)
mounts() {
  local r=$1
  for m in proc sys dev dev/shm dev/pts tmp; do mkdir -p "$r/$m"; mountpoint -q "$r/$m" || mount --bind "/$m" "$r/$m"; done
  local dotnet; dotnet=$(dirname "$(readlink -f "$(command -v dotnet)")")
  for m in "$repo" "$dotnet" "$HOME/.nuget"; do
    mkdir -p "$r$m"; mountpoint -q "$r$m" || mount --bind "$m" "$r$m"
  done
}
# Undone after each root's run: a bind mount left in place would make `rm -rf $ROOTS` reach the host's folders.
unmount() {
  local r=$1 m
  for m in $(grep -o " $r[^ ]*" /proc/mounts | sort -r); do umount -l "$m" || true; done
}
case ${1:-} in
  setup)
    command -v debootstrap >/dev/null || apt-get install -y -q debootstrap
    [ -d "$ROOTS/ompi5" ] || debootstrap --variant=minbase --include=openmpi-bin,libicu76,ca-certificates,procps \
      trixie "$ROOTS/ompi5" http://deb.debian.org/debian
    if [ ! -d "$ROOTS/mpich" ]; then
      cp -a "$ROOTS/ompi5" "$ROOTS/mpich"; cp /etc/resolv.conf "$ROOTS/mpich/etc/"
      chroot "$ROOTS/mpich" bash -c "DEBIAN_FRONTEND=noninteractive apt-get purge -y -q 'openmpi-*' 'libopenmpi*' &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends mpich"
    fi ;;
  test)
    filter=${2:-FullyQualifiedName~DataParallelTests}
    for name in ompi5 mpich; do
      r="$ROOTS/$name"; mounts "$r"
      echo "== $name: $(chroot "$r" mpirun --version 2>&1 | grep -m1 -E 'Open MPI|Version:')"
      # SIGINT back to its default: a script run in the background inherits it ignored, and .NET then keeps it
      # ignored in the launcher, so the Ctrl-C test's SIGINT would never arrive.
      chroot "$r" env -i --default-signal=INT HOME="$HOME" PATH="$(dirname "$(readlink -f "$(command -v dotnet)")"):/usr/bin:/bin" \
        DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 \
        bash -c "set -o pipefail; cd '$repo/tests/Api.Tests' && dotnet test --no-build --filter '$filter' 2>&1 | grep -v '^\s*at ' | tail -30" \
        || failed=1
      unmount "$r"
    done
    exit ${failed:-0} ;;
  *) sed -n 2,6p "$0"; exit 2 ;;
esac
