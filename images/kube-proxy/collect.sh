#!/bin/sh
# Runs in a container of the node's root filesystem and writes to stdout a tar
# of what kube-proxy needs beside its binary: iptables (both backends),
# conntrack, their libraries (the Depends closure of the packages, from dpkg's
# own records) and busybox as /bin/sh for the backend wrapper.
set -eu
want="iptables conntrack busybox-static"
seen=""
closure() {
  for p in "$@"; do
    p=${p%%:*}
    case " $seen " in *" $p "*) continue ;; esac
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || continue
    seen="$seen $p"
    deps=$(dpkg-query -W -f='${Pre-Depends}, ${Depends}' "$p" |
      tr ',' '\n' | sed -e 's/|.*//' -e 's/(.*)//' -e 's/ //g' | grep -v '^$' || true)
    # shellcheck disable=SC2086
    closure $deps
  done
}
closure $want
# Packages whose files a static kube-proxy image never runs.
skip=" debconf perl-base dpkg libc-bin gcc-12-base tar coreutils sed grep mawk dash init-system-helpers libselinux1 libpcre2-8-0 "
list=$(mktemp)
{
  # The merged-/usr links (bin -> usr/bin, ...), so /bin/sh and the loader resolve.
  for l in bin lib lib64 sbin; do if [ -L "/$l" ]; then echo "$l"; fi; done
  for p in $seen; do
    case "$skip" in *" $p "*) continue ;; esac
    dpkg-query -L "$p" | while read -r f; do
      if [ -f "$f" ] || [ -L "$f" ]; then
        # dpkg records /lib/...; store each file at its real place under /usr.
        d=$(readlink -f "$(dirname "$f")")
        echo "${d%/}/$(basename "$f")" | cut -c2-
      fi
    done
  done
} | grep -v -e '^usr/share/' -e '^usr/lib/x86_64-linux-gnu/gconv/' | sort -u > "$list"
tar -C / -cf - --no-recursion -T "$list"
