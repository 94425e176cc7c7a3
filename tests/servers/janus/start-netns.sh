#!/usr/bin/env bash
# Janus for the media tests, in a network namespace of its own. Janus never gathers ICE candidates
# on a loopback interface, so here it gets a veth pair (10.200.0.1/24 on jc0, nothing behind jc1)
# that exists only inside the namespace; the tests join the namespace (setns) to talk to it, and no
# packet can leave the machine. Same arguments and ready line as start.sh:
#   bash tests/servers/janus/start-netns.sh WS_PORT ADMIN_PORT DIR
set -euo pipefail
if [ "${JANUS_IN_NETNS:-}" != 1 ]; then
  command -v unshare >/dev/null || { echo "unshare not found: run 'bash .ci/run' (util-linux)" >&2; exit 127; }
  command -v ip >/dev/null || { echo "ip not found: run 'bash .ci/run' (iproute2)" >&2; exit 127; }
  JANUS_IN_NETNS=1 exec unshare -n bash "$0" "$@"
fi
ip link set lo up
ip link add jc0 type veth peer name jc1
ip addr add 10.200.0.1/24 dev jc0
ip link set jc0 up
ip link set jc1 up
exec bash "$(dirname "$0")/start.sh" "$@"
