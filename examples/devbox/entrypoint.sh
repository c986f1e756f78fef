#!/bin/sh
# Start dockerd and sshd; install the portal's SSH key for `dev` (its home is the instance's volume,
# which starts empty the first time).
set -eu
install -d -o dev -g dev -m 700 /home/dev /home/dev/.ssh
if [ -n "${SSH_AUTHORIZED_KEYS:-}" ]; then
  printf '%s\n' "$SSH_AUTHORIZED_KEYS" > /home/dev/.ssh/authorized_keys
  chown dev:dev /home/dev/.ssh/authorized_keys && chmod 600 /home/dev/.ssh/authorized_keys
fi
ssh-keygen -A
dockerd >/var/log/dockerd.log 2>&1 &
exec /usr/sbin/sshd -D -e
