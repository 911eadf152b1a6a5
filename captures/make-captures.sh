#!/usr/bin/env bash
# make-captures.sh - regenerate the sample packet captures used by mtlscope's tests.
#
# Real TLS stacks (OpenSSL s_server/s_client, Python ssl, curl) talk over the
# loopback interface or over veth pairs between network namespaces, and real
# capture tools (tcpdump, dumpcap) record them. Certificates, keys and key logs
# are generated into a temporary directory that is deleted on exit; only the
# capture files are written into this directory.
#
# Usage: sudo captures/make-captures.sh           (needs root: tcpdump, ip netns)
#        KEEP_WORK=1 sudo captures/make-captures.sh   (keep the temp dir for debugging)
#
# Re-runnable and idempotent: every capture file is rebuilt from scratch.
# Client ephemeral ports, random values, timestamps and certificate validity
# dates change between runs; SNI, ALPN, versions, cipher suites, alerts,
# addresses and server ports do not.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=captures/lib/proc.sh
source "$HERE/lib/proc.sh"
BG_TIMEOUT=90
SCRIPTS="$HERE/scripts"
export PYTHONDONTWRITEBYTECODE=1
export LC_ALL=C

if [[ $(id -u) -ne 0 ]]; then
    echo "make-captures.sh: must run as root (packet capture, network namespaces)" >&2
    exit 1
fi


# --------------------------------------------------------------------------
# tools
# --------------------------------------------------------------------------
ensure_tools() {
    local missing=() pkgs=()
    local -A pkg_of=(
        [tcpdump]=tcpdump [tshark]=tshark [dumpcap]=wireshark-common [capinfos]=wireshark-common
        [openssl]=openssl [curl]=curl [ip]=iproute2 [tc]=iproute2 [ss]=iproute2
        [python3]=python3 [timeout]=coreutils
    )
    local c
    for c in "${!pkg_of[@]}"; do
        command -v "$c" >/dev/null 2>&1 || missing+=("$c")
    done
    if ((${#missing[@]})); then
        log "installing missing tools: ${missing[*]}"
        for c in "${missing[@]}"; do pkgs+=("${pkg_of[$c]}"); done
        export DEBIAN_FRONTEND=noninteractive
        echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections 2>/dev/null || true
        timeout -k 5 600 apt-get update -q
        # shellcheck disable=SC2046
        timeout -k 5 900 apt-get install -y -q --no-install-recommends $(printf '%s\n' "${pkgs[@]}" | sort -u)
    fi
}
ensure_tools

# Prefer the distribution's interpreter (pyenv/venv shims are not needed: stdlib only).
PY=python3
[[ -x /usr/bin/python3 ]] && PY=/usr/bin/python3

# --------------------------------------------------------------------------
# temp dir, background processes, namespaces, cleanup
# --------------------------------------------------------------------------
WORK="$(mktemp -d /tmp/mtlscope-captures.XXXXXX)"
PIDS=()
NS_CLI=mtlscope-cli
NS_RTR=mtlscope-rtr
NS_SRV=mtlscope-srv

del_netns() {
    local ns
    for ns in "$NS_CLI" "$NS_RTR" "$NS_SRV"; do
        ip netns del "$ns" 2>/dev/null || true
    done
}

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    del_netns
    if [[ -n "${KEEP_WORK:-}" ]]; then
        echo "work dir kept: $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM




# listening NS PORT : true when something listens on TCP PORT (NS may be "-" for the root ns)
listening() {
    local ns=$1 port=$2
    if [[ $ns == - ]]; then
        ss -Hltn "sport = :$port" | grep -q .
    else
        ip netns exec "$ns" ss -Hltn "sport = :$port" | grep -q .
    fi
}

# start_tcpdump NS IFACE OUT FILTER [extra tcpdump args...]
start_tcpdump() {
    local ns=$1 ifc=$2 out=$3 filter=$4
    shift 4
    local pre=()
    [[ $ns != - ]] && pre=(ip netns exec "$ns")
    rm -f "$out"
    run_bg "$out.log" "${pre[@]}" tcpdump -Z root -i "$ifc" -nn -U --immediate-mode "$@" -w "$out" "$filter"
    CAP_PID=$BG_PID
    wait_until 10 grep -q "listening on" "$out.log"
}

# start_dumpcap IFACE OUT FILTER
start_dumpcap() {
    local ifc=$1 out=$2 filter=$3
    rm -f "$out"
    run_bg "$out.log" dumpcap -i "$ifc" -f "$filter" -w "$out"
    CAP_PID=$BG_PID
    wait_until 10 grep -q "Capturing on" "$out.log"
    sleep 0.3
}

stop_capture() {
    sleep 0.5 # let the last packets (FIN/ACK) arrive
    stop "$CAP_PID"
}

publish() { # publish TMPFILE NAME
    install -m 0644 "$1" "$HERE/$2"
    echo "wrote $HERE/$2 ($(stat -c %s "$HERE/$2") bytes)" >&2
}

# nssysctl NS KEY VALUE : set a per-namespace sysctl without needing procps' sysctl
nssysctl() {
    ip netns exec "$1" sh -c "echo $3 > /proc/sys/$(echo "$2" | tr . /)"
}

del_netns # leftovers from an interrupted run

# --------------------------------------------------------------------------
# PKI (temporary; never written into the repository)
# --------------------------------------------------------------------------
PKI="$WORK/pki"
mkdir -p "$PKI"
RSA=(-newkey rsa:2048)
EC=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1)

# make_ca NAME SUBJECT KEYALG...
make_ca() {
    local name=$1 subj=$2
    shift 2
    openssl req -x509 -new -nodes "$@" -sha256 -days 3650 \
        -keyout "$PKI/$name.key" -out "$PKI/$name.pem" -subj "$subj" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -addext "subjectKeyIdentifier=hash" 2>/dev/null
}

# make_leaf NAME CA SERIAL SUBJECT SAN EKU KEYALG...
make_leaf() {
    local name=$1 ca=$2 serial=$3 subj=$4 san=$5 eku=$6
    shift 6
    openssl req -new -nodes "$@" -keyout "$PKI/$name.key" -out "$PKI/$name.csr" -subj "$subj" 2>/dev/null
    cat >"$PKI/$name.ext" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=$eku
subjectAltName=$san
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
EOF
    openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/$ca.pem" -CAkey "$PKI/$ca.key" \
        -set_serial "$serial" -days 825 -sha256 -extfile "$PKI/$name.ext" \
        -out "$PKI/$name.pem" 2>/dev/null
}

log "generating test PKI in $PKI"
make_ca web-ca "/O=mtlscope test/CN=mtlscope Test Root CA" "${RSA[@]}"
make_ca mesh-ca "/O=cluster.local/CN=mtlscope Test Mesh CA" "${EC[@]}"
make_ca rogue-ca "/O=mtlscope rogue/CN=mtlscope Untrusted CA" "${RSA[@]}"
make_leaf api web-ca 0x1001 "/CN=api.example.test" "DNS:api.example.test" serverAuth "${RSA[@]}"
make_leaf py web-ca 0x1002 "/CN=py.example.test" "DNS:py.example.test" serverAuth "${EC[@]}"
make_leaf www web-ca 0x1003 "/CN=www.example.test" "DNS:www.example.test" serverAuth "${RSA[@]}"
make_leaf split web-ca 0x1004 "/CN=split.example.test" "DNS:split.example.test" serverAuth "${EC[@]}"
make_leaf mesh-server mesh-ca 0x2001 "/O=cluster.local" \
    "URI:spiffe://cluster.local/ns/default/sa/server,DNS:server.default.svc.cluster.local" \
    "serverAuth,clientAuth" "${EC[@]}"
make_leaf mesh-client mesh-ca 0x2002 "/O=cluster.local" \
    "URI:spiffe://cluster.local/ns/default/sa/client" "serverAuth,clientAuth" "${EC[@]}"
make_leaf untrusted rogue-ca 0x3001 "/CN=untrusted.example.test" "DNS:untrusted.example.test" serverAuth "${RSA[@]}"

# Document root for `openssl s_server -WWW`
DOCROOT="$WORK/www"
mkdir -p "$DOCROOT"
printf 'hello from openssl s_server\n' >"$DOCROOT/hello.txt"

HTTP10_REQ='GET /hello.txt HTTP/1.0\r\n\r\n'

# s_server_bg LOG ARGS... : start `openssl s_server -WWW` for one connection in $DOCROOT
s_server_bg() {
    local logf=$1
    shift
    (cd "$DOCROOT" && exec timeout -k 5 60 openssl s_server -WWW -naccept 1 "$@") >"$logf" 2>&1 &
    BG_PID=$!
    PIDS+=("$BG_PID")
}

# --------------------------------------------------------------------------
# 1. openssl-tls13-lo.pcap
# --------------------------------------------------------------------------
log "1. openssl s_server/s_client TLS 1.3 on lo:8443"
OUT="$WORK/openssl-tls13-lo.pcap"
start_tcpdump - lo "$OUT" "tcp port 8443"
s_server_bg "$WORK/s1.log" -accept 127.0.0.1:8443 -tls1_3 -alpn h2,http/1.1 \
    -cert "$PKI/api.pem" -key "$PKI/api.key"
SRV=$BG_PID
wait_until 10 listening - 8443
printf "$HTTP10_REQ" | timeout -k 5 20 openssl s_client -connect 127.0.0.1:8443 -tls1_3 \
    -servername api.example.test -alpn h2,http/1.1 -CAfile "$PKI/web-ca.pem" \
    -verify_return_error -ign_eof -keylogfile "$WORK/k1.keys" >"$WORK/c1.log" 2>&1
stop "$SRV" 5
stop_capture
grep -q "hello from openssl" "$WORK/c1.log" || { cat "$WORK/c1.log" >&2; exit 1; }
publish "$OUT" openssl-tls13-lo.pcap

# --------------------------------------------------------------------------
# 2. openssl-tls12-mutual-lo.pcap
# --------------------------------------------------------------------------
log "2. openssl mutual TLS 1.2 (istio-like SPIFFE certs) on lo:8080"
OUT="$WORK/openssl-tls12-mutual-lo.pcap"
start_tcpdump - lo "$OUT" "tcp port 8080"
s_server_bg "$WORK/s2.log" -accept 127.0.0.1:8080 -tls1_2 -alpn istio-peer-exchange,istio \
    -cert "$PKI/mesh-server.pem" -key "$PKI/mesh-server.key" \
    -CAfile "$PKI/mesh-ca.pem" -Verify 1 -verify_return_error
SRV=$BG_PID
wait_until 10 listening - 8080
printf "$HTTP10_REQ" | timeout -k 5 20 openssl s_client -connect 127.0.0.1:8080 -tls1_2 \
    -servername outbound_.8080_._.server.default.svc.cluster.local \
    -alpn istio-peer-exchange,istio -CAfile "$PKI/mesh-ca.pem" -verify_return_error \
    -cert "$PKI/mesh-client.pem" -key "$PKI/mesh-client.key" \
    -ign_eof -keylogfile "$WORK/k2.keys" >"$WORK/c2.log" 2>&1
stop "$SRV" 5
stop_capture
grep -q "hello from openssl" "$WORK/c2.log" || { cat "$WORK/c2.log" >&2; exit 1; }
publish "$OUT" openssl-tls12-mutual-lo.pcap

# --------------------------------------------------------------------------
# 3. python-tls-any-sll2.pcap
# --------------------------------------------------------------------------
log "3. Python ssl server/client TLS 1.3 on 127.0.0.1:9443, captured on 'any' (SLL2)"
OUT="$WORK/python-tls-any-sll2.pcap"
start_tcpdump - any "$OUT" "tcp port 9443" -y LINUX_SLL2
run_bg "$WORK/s3.log" "$PY" "$SCRIPTS/py_tls_server.py" --bind 127.0.0.1 --port 9443 \
    --cert "$PKI/py.pem" --key "$PKI/py.key" --alpn http/1.1 --keylog "$WORK/k3.keys"
SRV=$BG_PID
wait_until 10 listening - 9443
timeout -k 5 20 "$PY" "$SCRIPTS/py_tls_client.py" --host 127.0.0.1 --port 9443 --sni py.example.test \
    --alpn http/1.1 --cafile "$PKI/web-ca.pem" >"$WORK/c3.log" 2>&1
stop "$SRV" 5
stop_capture
grep -q "status=b'HTTP/1.1 200 OK'" "$WORK/c3.log" || { cat "$WORK/c3.log" "$WORK/s3.log" >&2; exit 1; }
publish "$OUT" python-tls-any-sll2.pcap

# --------------------------------------------------------------------------
# 4. curl-http-plaintext-lo.pcap
# --------------------------------------------------------------------------
log "4. curl cleartext HTTP/1.1 (lo:8000) and h2c prior knowledge (lo:8001)"
OUT="$WORK/curl-http-plaintext-lo.pcap"
start_tcpdump - lo "$OUT" "tcp port 8000 or tcp port 8001"
run_bg "$WORK/s4.log" "$PY" "$SCRIPTS/plain_http_servers.py" --bind 127.0.0.1 \
    --http1-port 8000 --h2c-port 8001 --count 1
SRV=$BG_PID
wait_until 10 listening - 8000
wait_until 10 listening - 8001
timeout -k 5 20 curl -sS --http1.1 -A mtlscope-capture/1 http://127.0.0.1:8000/ >"$WORK/c4a.log" 2>&1
sleep 0.2
timeout -k 5 20 curl -sS --http2-prior-knowledge -A mtlscope-capture/1 http://127.0.0.1:8001/ >"$WORK/c4b.log" 2>&1
stop "$SRV" 5
stop_capture
grep -q "HTTP/1.1" "$WORK/c4a.log" && grep -q "h2c" "$WORK/c4b.log" || {
    cat "$WORK/c4a.log" "$WORK/c4b.log" "$WORK/s4.log" >&2
    exit 1
}
publish "$OUT" curl-http-plaintext-lo.pcap

# --------------------------------------------------------------------------
# 5. curl-https-pcapng.pcapng
# --------------------------------------------------------------------------
log "5. curl -> openssl s_server -WWW on lo:4443, captured by dumpcap (pcapng)"
OUT="$WORK/curl-https-pcapng.pcapng"
start_dumpcap lo "$OUT" "tcp port 4443"
s_server_bg "$WORK/s5.log" -accept 127.0.0.1:4443 -alpn http/1.1 \
    -cert "$PKI/www.pem" -key "$PKI/www.key"
SRV=$BG_PID
wait_until 10 listening - 4443
SSLKEYLOGFILE="$WORK/k5.keys" timeout -k 5 20 curl -sS -A mtlscope-capture/1 --cacert "$PKI/web-ca.pem" \
    --resolve www.example.test:4443:127.0.0.1 https://www.example.test:4443/hello.txt \
    >"$WORK/c5.log" 2>&1
stop "$SRV" 5
stop_capture
grep -q "hello from openssl" "$WORK/c5.log" || { cat "$WORK/c5.log" "$WORK/s5.log" >&2; exit 1; }
publish "$OUT" curl-https-pcapng.pcapng

# --------------------------------------------------------------------------
# 6. split-clienthello-ooo.pcap
# --------------------------------------------------------------------------
# Topology (all veth, IPv6 disabled, MTU 1500, GSO limited to 1 segment):
#   [mtlscope-cli] mtls-c0 10.244.1.10/16 <-> mtls-r0 [mtlscope-rtr] mtls-r1 <-> mtls-s0 10.244.2.20/16 [mtlscope-srv]
# The router namespace runs scripts/reorder_bridge.py, a userspace L2 bridge (AF_PACKET)
# that adds a constant 10 ms one-way delay and holds back the first ClientHello segment
# until the next one has passed. tc/netem was the first choice, but sch_netem is not
# available on every kernel (e.g. Firecracker guests without modules); the bridge works
# everywhere. The client writes the ClientHello in 3 send() calls 2 ms apart, which is
# inside the client's RACK reordering window (min_rtt/4 ~ 5 ms), so the reorder does
# not trigger a spurious retransmission and the capture shows a clean reorder.
log "6. split + reordered ClientHello between namespaces (10.244.1.10 -> 10.244.2.20:443)"
setup_netns() {
    local ns
    for ns in "$NS_CLI" "$NS_RTR" "$NS_SRV"; do
        ip netns add "$ns"
        nssysctl "$ns" net.ipv6.conf.all.disable_ipv6 1
        nssysctl "$ns" net.ipv6.conf.default.disable_ipv6 1
        ip -n "$ns" link set lo up
    done
    ip link add mtls-c0 netns "$NS_CLI" address 02:00:0a:f4:01:0a type veth \
        peer name mtls-r0 netns "$NS_RTR" address 02:00:00:00:01:01
    ip link add mtls-s0 netns "$NS_SRV" address 02:00:0a:f4:02:14 type veth \
        peer name mtls-r1 netns "$NS_RTR" address 02:00:00:00:01:02
    ip -n "$NS_CLI" addr add 10.244.1.10/16 dev mtls-c0
    ip -n "$NS_SRV" addr add 10.244.2.20/16 dev mtls-s0
    # One TCP segment per send() even when the calls are close together.
    nssysctl "$NS_CLI" net.ipv4.tcp_autocorking 0
    ip -n "$NS_CLI" link set mtls-c0 gso_max_segs 1 up
    ip -n "$NS_SRV" link set mtls-s0 gso_max_segs 1 up
    ip -n "$NS_RTR" link set mtls-r0 promisc on up
    ip -n "$NS_RTR" link set mtls-r1 promisc on up
}
capture_split() {
    del_netns
    setup_netns
    run_bg "$WORK/bridge.log" ip netns exec "$NS_RTR" "$PY" "$SCRIPTS/reorder_bridge.py" \
        --a mtls-r0 --b mtls-r1 --delay 0.010 --ready-file "$WORK/bridge.ready"
    local bridge=$BG_PID srv
    wait_until 10 test -e "$WORK/bridge.ready"
    start_tcpdump "$NS_SRV" mtls-s0 "$OUT" "tcp port 443"
    run_bg "$WORK/s6.log" ip netns exec "$NS_SRV" "$PY" "$SCRIPTS/py_tls_server.py" \
        --bind 10.244.2.20 --port 443 --cert "$PKI/split.pem" --key "$PKI/split.key" \
        --alpn http/1.1 --keylog "$WORK/k6.keys"
    srv=$BG_PID
    wait_until 10 listening "$NS_SRV" 443
    timeout -k 5 20 ip netns exec "$NS_CLI" "$PY" "$SCRIPTS/split_client.py" --host 10.244.2.20 --port 443 \
        --sni split.example.test --alpn h2,http/1.1 --cafile "$PKI/web-ca.pem" \
        --splits 96,256 --pause 0.002 >"$WORK/c6.log" 2>&1 || true
    stop "$srv" 5
    stop_capture
    stop "$bridge"
    rm -f "$WORK/bridge.ready"
    del_netns
    if ! grep -q "status=b'HTTP/1.1 200 OK'" "$WORK/c6.log"; then
        cat "$WORK/c6.log" "$WORK/s6.log" "$WORK/bridge.log" >&2
        return 1
    fi
    # The ClientHello segments must be out of order on the wire: some client->server
    # data frame must carry a lower sequence number than a data frame captured before it.
    tshark -r "$OUT" -Y "ip.src==10.244.1.10 && tcp.len>0" -T fields -e frame.number -e tcp.seq -e tcp.len \
        >"$WORK/seq6.txt" 2>/dev/null
    if ! awk 'NR==1{max=$2} NR>1{ if ($2 < max) ooo=1; if ($2 > max) max=$2 } END{ exit ooo ? 0 : 1 }' "$WORK/seq6.txt"; then
        echo "split capture is not out of order:" >&2
        cat "$WORK/seq6.txt" "$WORK/bridge.log" >&2
        return 1
    fi
    local retrans
    retrans=$(tshark -r "$OUT" -Y "tcp.analysis.retransmission or tcp.analysis.spurious_retransmission" \
        -T fields -e frame.number 2>/dev/null | grep -c . || true)
    if ((retrans)); then
        echo "split capture contains $retrans retransmission(s); expected a clean reorder" >&2
        return 1
    fi
}
OUT="$WORK/split-clienthello-ooo.pcap"
ok=0
for attempt in 1 2 3; do
    if capture_split; then
        ok=1
        break
    fi
    echo "split capture attempt $attempt failed, retrying" >&2
done
((ok)) || { echo "could not produce split-clienthello-ooo.pcap" >&2; exit 1; }
publish "$OUT" split-clienthello-ooo.pcap

# --------------------------------------------------------------------------
# 7. tls-alert-unknown-ca-lo.pcap
# --------------------------------------------------------------------------
log "7. TLS 1.2 client rejects server certificate (alert unknown_ca) on lo:10443"
OUT="$WORK/tls-alert-unknown-ca-lo.pcap"
start_tcpdump - lo "$OUT" "tcp port 10443"
s_server_bg "$WORK/s7.log" -accept 127.0.0.1:10443 \
    -cert "$PKI/untrusted.pem" -key "$PKI/untrusted.key"
SRV=$BG_PID
wait_until 10 listening - 10443
printf "$HTTP10_REQ" | timeout -k 5 20 openssl s_client -connect 127.0.0.1:10443 -tls1_2 \
    -servername untrusted.example.test -CAfile "$PKI/web-ca.pem" -verify_return_error \
    >"$WORK/c7.log" 2>&1 && { echo "s_client unexpectedly succeeded" >&2; exit 1; }
stop "$SRV" 2
stop_capture
publish "$OUT" tls-alert-unknown-ca-lo.pcap

# --------------------------------------------------------------------------
# verification
# --------------------------------------------------------------------------
log "verification"
# tshark as root prints a warning on every run; drop just that line.
tshark() { command tshark "$@" 2> >(grep -v 'Running as user "root"' >&2); }
# Decode hints: 8080 is HTTP-alternate for Wireshark, and the split capture needs
# reassembly of out-of-order segments.
TS_OPTS=(-d tcp.port==8080,tls -o tcp.reassemble_out_of_order:TRUE)
FILES=(openssl-tls13-lo.pcap openssl-tls12-mutual-lo.pcap python-tls-any-sll2.pcap
    curl-http-plaintext-lo.pcap curl-https-pcapng.pcapng split-clienthello-ooo.pcap
    tls-alert-unknown-ca-lo.pcap)
declare -A KEYLOG=([openssl-tls13-lo.pcap]=k1 [openssl-tls12-mutual-lo.pcap]=k2
    [python-tls-any-sll2.pcap]=k3 [curl-https-pcapng.pcapng]=k5 [split-clienthello-ooo.pcap]=k6)
fail=0
for f in "${FILES[@]}"; do
    p="$HERE/$f"
    size=$(stat -c %s "$p")
    encap=$(capinfos -E "$p" | sed -n 's/^File encapsulation: *//p')
    streams=$(tshark -r "$p" -T fields -e tcp.stream | sort -u | grep -c .)
    printf '\n--- %s: %s bytes, encapsulation %s, %s TCP stream(s)\n' "$f" "$size" "$encap" "$streams"
    if ((size >= 100 * 1024)); then
        echo "!!! $f is larger than 100 KB" >&2
        fail=1
    fi
    tshark -r "$p" "${TS_OPTS[@]}" -Y "tls.handshake or tls.alert_message" -T fields \
        -e frame.number -e tcp.stream -e ip.src -e tcp.srcport -e ip.dst -e tcp.dstport \
        -e tls.handshake.type -e tls.handshake.extensions_server_name \
        -e tls.handshake.extensions_alpn_str -e tls.handshake.version \
        -e tls.handshake.ciphersuite -e tls.handshake.extensions.supported_version \
        -e tls.alert_message.desc
    if [[ -n "${KEYLOG[$f]:-}" && -s "$WORK/${KEYLOG[$f]}.keys" ]]; then
        echo "    (decrypted with key log) negotiated ALPN / version / cipher:"
        tshark -r "$p" "${TS_OPTS[@]}" -o "tls.keylog_file:$WORK/${KEYLOG[$f]}.keys" \
            -Y "tls.handshake.type==2 or tls.handshake.type==8" -T fields \
            -e tls.handshake.type -e tls.handshake.extensions_alpn_str \
            -e tls.handshake.extensions.supported_version -e tls.handshake.ciphersuite | sed 's/^/    /'
    fi
done
printf '\n--- curl-http-plaintext-lo.pcap requests\n'
tshark -r "$HERE/curl-http-plaintext-lo.pcap" -d tcp.port==8001,http2 -Y "http.request or http2.type==1" \
    -T fields -e tcp.stream -e tcp.dstport -e http.request.method -e http.request.uri -e http.request.version \
    -e http2.header.value
printf '\n--- split-clienthello-ooo.pcap client->server data segments (frame, seq, len)\n'
cat "$WORK/seq6.txt"
printf '\n--- tls-alert-unknown-ca-lo.pcap alert\n'
tshark -r "$HERE/tls-alert-unknown-ca-lo.pcap" -Y tls.alert_message -T fields \
    -e ip.src -e tcp.srcport -e tls.alert_message.level -e tls.alert_message.desc
alert=$(tshark -r "$HERE/tls-alert-unknown-ca-lo.pcap" -Y "tls.alert_message.desc==48" -T fields -e tcp.dstport)
[[ $alert == 10443 ]] || { echo "!!! unknown_ca alert from the client not found" >&2; fail=1; }
exit $fail
