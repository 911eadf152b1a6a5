# proc.sh - process helpers shared by the capture generators (sourced, not run).
#
# The sourcing script owns the PIDS array (killed in its cleanup trap) and may set
# BG_TIMEOUT (seconds a background command may run; default 120).

log() { printf '\n==> %s\n' "$*" >&2; }

# run_bg LOGFILE CMD... : start CMD in the background (bounded by timeout), PID in BG_PID
run_bg() {
    local logf=$1
    shift
    timeout -k 5 "${BG_TIMEOUT:-120}" "$@" >"$logf" 2>&1 &
    BG_PID=$!
    PIDS+=("$BG_PID")
}

# wait_until SECONDS CMD... : poll until CMD succeeds
wait_until() {
    local secs=$1 i
    shift
    for ((i = 0; i < secs * 20; i++)); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.05
    done
    echo "timed out waiting for: $*" >&2
    return 1
}

# stop PID [GRACE_SECONDS]: wait for PID to exit by itself for a while, then SIGTERM it
stop() {
    local pid=$1 grace=${2:-0} i
    for ((i = 0; i < grace * 20; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
