#!/usr/bin/env bash
# Apptainer where the host has none (Debian bookworm ships none): Debian sid's apptainer in a debootstrapped
# root, entered with pivot_root in a private mount namespace (apptainer refuses a plain chroot), host /work
# and /tmp visible at the same paths. Used by tests/container/smoke.sh as APPTAINER=...; needs root.
#   tests/container/sandbox-apptainer.sh apptainer-args...       (AS_UID=N runs it as that user)
# The root is made once in ${SID_ROOT:-/var/tmp/qsmapp-apptainer-sid} (about 1 minute).
set -euo pipefail
ROOT=${SID_ROOT:-/var/tmp/qsmapp-apptainer-sid}
if [ ! -x "$ROOT/usr/bin/apptainer" ] || [ ! -x "$ROOT/usr/bin/squashfuse" ]; then
    rm -rf "$ROOT"
    debootstrap --variant=minbase --include=apptainer,squashfs-tools,squashfuse,fuse2fs,ca-certificates \
        sid "$ROOT" http://deb.debian.org/debian >&2
fi
cp /etc/hosts /etc/resolv.conf "$ROOT/etc/" 2>/dev/null || true
AS_UID=${AS_UID:-0}
if [ "$AS_UID" != 0 ] && ! grep -q "^u$AS_UID:" "$ROOT/etc/passwd"; then
    echo "u$AS_UID:x:$AS_UID:$AS_UID::/tmp:/bin/sh" >> "$ROOT/etc/passwd"
    echo "g$AS_UID:x:$AS_UID:" >> "$ROOT/etc/group"
fi
# As root apptainer asks for every capability (this sandbox lacks some): --userns. As a user: setpriv, and
# --unsquash when /dev/fuse is not open to users.
# A build's %test runs with every capability too: the wrapper builds with --notest (smoke.sh then runs
# `apptainer test`, which --userns lets run).
if [ "$AS_UID" = 0 ]; then
    PREFIX="apptainer"
    case "${1:-}" in
        run|exec|test|shell) PREFIX="apptainer $1 --userns"; shift ;;
        build) PREFIX="apptainer build --notest"; shift ;;
    esac
else
    PREFIX="setpriv --reuid $AS_UID --regid $AS_UID --clear-groups env HOME=/tmp apptainer"
    case "${1:-}" in run|exec|test|shell) PREFIX="$PREFIX $1 --unsquash"; shift ;; esac
fi
exec unshare -m --propagation private bash -c '
set -e
R=$1; shift
mount --bind "$R" "$R"
mount -t proc proc "$R/proc"
mount --rbind /sys "$R/sys"
mount --rbind /dev "$R/dev"
mkdir -p "$R/work" "$R/.oldroot"
mount --rbind /work "$R/work"
mount --rbind /tmp "$R/tmp"
cd "$R"
pivot_root . .oldroot
exec /usr/sbin/chroot / /bin/bash -c "umount -l /.oldroot; cd /tmp; exec \"\$@\"" bash "$@"
' bash "$ROOT" $PREFIX "$@"
