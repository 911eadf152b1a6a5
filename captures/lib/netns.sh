# netns.sh - network-namespace helpers shared by the pod-like capture generators
# (captures/scenarios, captures/posture; sourced, not run, after lib/proc.sh).
#
# The sourcing script defines ns POD (a pod's namespace name) and owns PODS (pod
# names), NS_NODE (the node namespace), PIDS (background processes) and WORK (its
# scratch directory, removed at exit unless KEEP_WORK is set).

del_netns() {
    local p
    for p in "${PODS[@]}"; do ip netns del "$(ns "$p")" 2>/dev/null || true; done
    ip netns del "$NS_NODE" 2>/dev/null || true
}

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    del_netns
    if [[ -n "${KEEP_WORK:-}" ]]; then
        echo "work dir kept: $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}

# listening POD PORT : something listens on TCP PORT in the pod
listening() { ip netns exec "$(ns "$1")" ss -Hltn "sport = :$2" | grep -q .; }

# nssysctl NETNS KEY VALUE : set a sysctl inside a namespace
nssysctl() { ip netns exec "$1" sh -c "echo $3 > /proc/sys/$(echo "$2" | tr . /)"; }
