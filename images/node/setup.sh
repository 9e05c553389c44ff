#!/bin/bash
# Runs once inside the node image build: the steps of kind's base-image
# Dockerfile that are not plain file copies, adapted to Debian's containerd.
set -euo pipefail

# kind's systemd trimming: no getty, udev or tmpfiles setup in a container.
find /lib/systemd/system/sysinit.target.wants/ -name systemd-tmpfiles-setup.service -delete
rm -f /lib/systemd/system/multi-user.target.wants/* \
      /etc/systemd/system/*.wants/* \
      /lib/systemd/system/local-fs.target.wants/* \
      /lib/systemd/system/sockets.target.wants/*udev* \
      /lib/systemd/system/sockets.target.wants/*initctl* \
      /lib/systemd/system/basic.target.wants/*
echo "ReadKMsg=no" >> /etc/systemd/journald.conf
systemctl enable kubelet.service containerd.service undo-mount-hacks.service egress-guard.service
systemctl mask systemd-binfmt.service
mkdir -p /etc/kubernetes/manifests

# kind's units run containerd from /usr/local/bin; Debian installs it in /usr/bin.
for b in containerd containerd-shim-runc-v2 ctr; do ln -sf "/usr/bin/$b" "/usr/local/bin/$b"; done

# Without CAP_SYS_RESOURCE runc cannot lower a container's oom_score_adj
# (pause asks for -998) and every sandbox fails; containerd must not ask.
sed -i 's/restrict_oom_score_adj = false/restrict_oom_score_adj = true/' /etc/containerd/config.toml
grep -q 'restrict_oom_score_adj = true' /etc/containerd/config.toml
# Privileged pods (kube-proxy) ask for every capability; the wrapper drops
# the ones this machine's bounding set lacks before runc applies them.
sed -i 's|^\(\s*\)SystemdCgroup = true|&\n\1BinaryName = "/usr/local/sbin/runc-capfix"|' /etc/containerd/config.toml
test "$(grep -c 'BinaryName = "/usr/local/sbin/runc-capfix"' /etc/containerd/config.toml)" -ge 1

# containerd's default OCI spec with kind's createContainer hook, as kind does.
ctr oci spec \
  | jq '.hooks.createContainer[.hooks.createContainer | length] |= . + {"path": "/kind/bin/mount-product-files.sh"}' \
  | jq 'del(.process.rlimits)' > /etc/containerd/cri-base.json

chmod 0755 /kind/bin /usr/local/sbin/*
