#!/usr/bin/env bash
# make-scenarios.sh - regenerate mtlscope's service-mesh scenario captures.
#
# Pods are network namespaces joined to a "node" namespace by veth pairs (the node
# routes between them, like a CNI). Real TLS stacks (OpenSSL s_server/s_client,
# Python ssl, curl, GnuTLS gnutls-serv) talk through a small Python "sidecar stand-in"
# (lib/sidecar.py) that reproduces what an Istio sidecar puts on the wire, and
# tcpdump records the traffic inside the pods. Certificates, keys and TLS key logs
# live in a temporary directory that is deleted on exit; only .pcap files are
# written here. expected.json (hand-written) says what the classifier must report
# for every flow; lib/check_expected.py checks the facts tshark can confirm.
#
# Usage: sudo captures/scenarios/make-scenarios.sh            (root: tcpdump, ip netns, iptables)
#        KEEP_WORK=1 sudo captures/scenarios/make-scenarios.sh (keep certs, key logs, logs)
#        ONLY="s03 s11c" sudo ...                               (run some scenarios only)
#        VERIFY_ONLY=1 sudo ...                                 (only re-check the existing files)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=captures/lib/proc.sh
source "$HERE/../lib/proc.sh"
LIB="$HERE/lib"
export PYTHONDONTWRITEBYTECODE=1
export LC_ALL=C

if [[ $(id -u) -ne 0 ]]; then
    echo "make-scenarios.sh: must run as root (packet capture, network namespaces, iptables)" >&2
    exit 1
fi

die() {
    echo "make-scenarios.sh: $*" >&2
    exit 1
}

# --------------------------------------------------------------------------
# tools
# --------------------------------------------------------------------------
ensure_tools() {
    local missing=() pkgs=() c
    local -A pkg_of=(
        [tcpdump]=tcpdump [tshark]=tshark [capinfos]=wireshark-common
        [openssl]=openssl [curl]=curl [ip]=iproute2 [ss]=iproute2
        [python3]=python3 [timeout]=coreutils [iptables]=iptables [ethtool]=ethtool
        [gnutls-serv]=gnutls-bin
    )
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

PY=python3
[[ -x /usr/bin/python3 ]] && PY=/usr/bin/python3

if [[ -n "${VERIFY_ONLY:-}" ]]; then
    exec "$PY" "$LIB/check_expected.py" --dir "$HERE" --expected "$HERE/expected.json"
fi

# --------------------------------------------------------------------------
# temp dir, background processes, namespaces, cleanup
# --------------------------------------------------------------------------
WORK="$(mktemp -d /tmp/mtlscope-scenarios.XXXXXX)"
KEYS="$WORK/keys"
mkdir -p "$KEYS"
PIDS=()     # every background process we started (for cleanup)
SRV_PIDS=() # servers of the current scenario
CAPS=()     # capture processes of the current scenario
SEQ=0

NS_NODE=mts-node
PODS=(sleep httpbin legacy gateway external internet)
declare -A IP=([sleep]=10.244.1.10 [httpbin]=10.244.2.20 [legacy]=10.244.3.30
    [gateway]=10.244.4.40 [external]=203.0.113.10 [internet]=198.51.100.7)
declare -A GW=([sleep]=10.244.1.1 [httpbin]=10.244.2.1 [legacy]=10.244.3.1
    [gateway]=10.244.4.1 [external]=203.0.113.1 [internet]=198.51.100.1)
ns() { echo "mts-$1"; }

# shellcheck source=captures/lib/netns.sh
source "$HERE/../lib/netns.sh"
trap cleanup EXIT
trap 'exit 130' INT TERM





# in_pod_bg POD NAME CMD... : background server in a pod (log in $WORK/NAME.SEQ.log)
in_pod_bg() {
    local pod=$1 name=$2
    shift 2
    run_bg "$WORK/$name.$SEQ.log" ip netns exec "$(ns "$pod")" "$@"
    SRV_PIDS+=("$BG_PID")
}

# in_pod POD CMD... : run a client in a pod (bounded)
in_pod() {
    local pod=$1
    shift
    timeout -k 5 30 ip netns exec "$(ns "$pod")" "$@"
}

# capture POD IFACE OUT : tcpdump inside the pod; IFACE "any" gives LINUX_SLL2 (276)
capture() {
    local pod=$1 ifc=$2 out=$3 extra=()
    [[ $ifc == any ]] && extra=(-y LINUX_SLL2)
    rm -f "$out"
    # -B: with -i any libpcap sizes ring frames for a 256 KiB snapshot, so the default
    # 2 MiB buffer holds only a few frames and bursts get "dropped by kernel".
    run_bg "$out.log" ip netns exec "$(ns "$pod")" tcpdump -Z root -i "$ifc" -nn -U --immediate-mode \
        -B 65536 "${extra[@]}" -w "$out" tcp
    CAPS+=("$BG_PID")
    CAP_LOGS+=("$out.log")
    wait_until 10 grep -q "listening on" "$out.log"
}

CAP_LOGS=()
stop_captures() {
    local pid f
    sleep 0.6 # last FIN/ACKs
    for pid in "${CAPS[@]}"; do stop "$pid"; done
    CAPS=()
    for f in "${CAP_LOGS[@]}"; do
        grep -q "^0 packets dropped by kernel" "$f" || {
            cat "$f" >&2
            die "packets dropped while capturing ($f)"
        }
    done
    CAP_LOGS=()
}

stop_servers() {
    local pid
    for pid in "${SRV_PIDS[@]}"; do stop "$pid" "${1:-3}"; done
    SRV_PIDS=()
}

PUBLISHED=()
publish() { # publish TMPFILE NAME
    install -m 0644 "$1" "$HERE/$2"
    PUBLISHED+=("$2")
    echo "wrote $2 ($(stat -c %s "$HERE/$2") bytes)" >&2
}

# expect_rc WANT CMD... : run a client and check its exit status (WANT may be "56|35")
expect_rc() {
    local want=$1 rc=0
    shift
    "$@" || rc=$?
    if [[ "|$want|" != *"|$rc|"* ]]; then
        echo "!!! expected exit status $want, got $rc from: $*" >&2
        return 1
    fi
}

# --------------------------------------------------------------------------
# topology: one "node" namespace routing between pod namespaces
# --------------------------------------------------------------------------
#   mts-sleep    10.244.1.10  client pod, meshed (ns foo, sa sleep)
#   mts-httpbin  10.244.2.20  server pod, meshed (ns bar, sa httpbin); service httpbin.bar
#                             ports http 8000->8080, https 443->443; excludeInboundPorts 9080,9443,9444,9445
#   mts-legacy   10.244.3.30  plaintext / non-mesh client pod (ns legacy)
#   mts-gateway  10.244.4.40  ingress gateway pod (ns istio-system)
#   mts-external 203.0.113.10 external TLS server api.external.test (outside the cluster)
#   mts-internet 198.51.100.7 client on the internet (calls the ingress gateway)
setup_topology() {
    local p i=1 mac
    del_netns
    ip netns add "$NS_NODE"
    ip -n "$NS_NODE" link set lo up
    nssysctl "$NS_NODE" net.ipv4.ip_forward 1
    nssysctl "$NS_NODE" net.ipv6.conf.all.disable_ipv6 1
    for p in "${PODS[@]}"; do
        ip netns add "$(ns "$p")"
        nssysctl "$(ns "$p")" net.ipv6.conf.all.disable_ipv6 1
        nssysctl "$(ns "$p")" net.ipv6.conf.default.disable_ipv6 1
        ip -n "$(ns "$p")" link set lo up
        mac=$(printf '02:00:%02x:%02x:%02x:%02x' $(echo "${IP[$p]}" | tr . ' '))
        ip link add eth0 netns "$(ns "$p")" address "$mac" type veth \
            peer name "veth-$p" netns "$NS_NODE" address "$(printf '02:ee:00:00:00:%02x' "$i")"
        ip -n "$(ns "$p")" addr add "${IP[$p]}/24" dev eth0
        ip -n "$(ns "$p")" link set eth0 up
        ip -n "$(ns "$p")" route add default via "${GW[$p]}"
        ip -n "$NS_NODE" addr add "${GW[$p]}/24" dev "veth-$p"
        ip -n "$NS_NODE" link set "veth-$p" up
        # Valid checksums and MSS-sized segments in the captures (no TX offload).
        ip netns exec "$(ns "$p")" ethtool -K eth0 tx off >/dev/null 2>&1 || true
        ip netns exec "$NS_NODE" ethtool -K "veth-$p" tx off >/dev/null 2>&1 || true
        i=$((i + 1))
    done
    # Istio-style inbound capture in the server pod (istio-iptables, trimmed): every
    # inbound TCP connection is REDIRECTed to the sidecar's 15006, except the status
    # ports and excludeInboundPorts. The sidecar forwards from 127.0.0.6, which is
    # never redirected (it arrives on lo with an existing conntrack entry).
    local ipt=(ip netns exec "$(ns httpbin)" iptables -w -t nat)
    "${ipt[@]}" -N ISTIO_INBOUND
    "${ipt[@]}" -N ISTIO_IN_REDIRECT
    "${ipt[@]}" -A PREROUTING -p tcp -j ISTIO_INBOUND
    for port in 15008 15020 15021 15090 22 9080 9443 9444 9445; do
        "${ipt[@]}" -A ISTIO_INBOUND -p tcp --dport "$port" -j RETURN
    done
    "${ipt[@]}" -A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT
    "${ipt[@]}" -A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006
}

# --------------------------------------------------------------------------
# PKI (temporary; never written into the repository)
# --------------------------------------------------------------------------
PKI="$WORK/pki"
mkdir -p "$PKI"

make_ca() { # NAME SUBJECT
    openssl req -x509 -new -nodes -newkey rsa:2048 -sha256 -days 3650 \
        -keyout "$PKI/$1.key" -out "$PKI/$1.pem" -subj "$2" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,digitalSignature,cRLSign" \
        -addext "subjectKeyIdentifier=hash" 2>/dev/null
}

# make_leaf NAME CA SUBJECT SAN EKU : ordinary leaf (RSA 2048, 825 days)
make_leaf() {
    local name=$1 ca=$2 subj=$3 san=$4 eku=$5
    openssl req -new -nodes -newkey rsa:2048 -keyout "$PKI/$name.key" -out "$PKI/$name.csr" \
        -subj "$subj" 2>/dev/null
    cat >"$PKI/$name.ext" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=$eku
subjectAltName=$san
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
EOF
    openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/$ca.pem" -CAkey "$PKI/$ca.key" \
        -set_serial "0x$(openssl rand -hex 8)" -days 825 -sha256 -extfile "$PKI/$name.ext" \
        -out "$PKI/$name.pem" 2>/dev/null
    cat "$PKI/$name.pem" "$PKI/$ca.pem" >"$PKI/$name.chain"
}

# make_workload NAME NS SA : Istio-like workload certificate. Empty subject, critical
# URI SAN spiffe://cluster.local/ns/NS/sa/SA, digitalSignature+keyEncipherment,
# serverAuth+clientAuth, RSA 2048, NotBefore = now - 2 min, lifetime 24 h; the chain
# file holds leaf + root like Istio's cert chain.
make_workload() {
    local name=$1 wns=$2 sa=$3 sd ed
    openssl req -new -nodes -newkey rsa:2048 -keyout "$PKI/$name.key" -out "$PKI/$name.csr" \
        -subj "/" 2>/dev/null
    cat >"$PKI/$name.ext" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=critical,URI:spiffe://cluster.local/ns/$wns/sa/$sa
authorityKeyIdentifier=keyid
EOF
    sd=$(date -u -d '-2 min' +%Y%m%d%H%M%SZ)
    ed=$(date -u -d '+24 hours -2 min' +%Y%m%d%H%M%SZ)
    openssl ca -batch -config "$PKI/mesh-ca.cnf" -cert "$PKI/mesh-root.pem" -keyfile "$PKI/mesh-root.key" \
        -in "$PKI/$name.csr" -out "$PKI/$name.pem" -startdate "$sd" -enddate "$ed" \
        -extfile "$PKI/$name.ext" -notext -subj / >/dev/null 2>&1
    cat "$PKI/$name.pem" "$PKI/mesh-root.pem" >"$PKI/$name.chain"
}

make_pki() {
    log "generating test PKI in $PKI"
    # Istio-style self-signed mesh root: subject O=<trust domain>.
    make_ca mesh-root "/O=cluster.local"
    mkdir -p "$PKI/meshdb"
    : >"$PKI/meshdb/index.txt"
    openssl rand -hex 8 >"$PKI/meshdb/serial"
    cat >"$PKI/mesh-ca.cnf" <<EOF
[ ca ]
default_ca = mesh
[ mesh ]
database = $PKI/meshdb/index.txt
new_certs_dir = $PKI/meshdb
serial = $PKI/meshdb/serial
default_md = sha256
policy = anything
unique_subject = no
copy_extensions = none
email_in_dn = no
[ anything ]
EOF
    make_workload sleep foo sleep
    make_workload httpbin bar httpbin
    make_workload ingressgw istio-system istio-ingressgateway-service-account
    # Application / gateway PKI.
    make_ca web-ca "/O=mtlscope test/CN=mtlscope Test Root CA"
    make_ca partner-ca "/O=mtlscope partner/CN=mtlscope Partner Client CA"
    make_ca rogue-ca "/O=mtlscope rogue/CN=mtlscope Untrusted CA"
    make_leaf app-httpbin web-ca "/CN=httpbin.bar.svc.cluster.local" \
        "DNS:httpbin.bar.svc.cluster.local,DNS:httpbin.bar.svc,DNS:httpbin" serverAuth
    make_leaf gw-httpbin web-ca "/CN=httpbin.example.com" "DNS:httpbin.example.com" serverAuth
    make_leaf gw-other web-ca "/CN=other.example.com" "DNS:other.example.com" serverAuth
    make_leaf gw-rogue rogue-ca "/CN=httpbin.example.com" "DNS:httpbin.example.com" serverAuth
    make_leaf ext-api web-ca "/CN=api.external.test" "DNS:api.external.test" serverAuth
    make_leaf partner-client partner-ca "/O=mtlscope partner/CN=client.partner.test" \
        "DNS:client.partner.test" clientAuth
    make_leaf sleep-egress partner-ca "/O=mtlscope partner/CN=sleep.foo.egress.test" \
        "DNS:sleep.foo.egress.test" clientAuth
    make_leaf rogue-client rogue-ca "/O=mtlscope rogue/CN=intruder.rogue.test" \
        "DNS:intruder.rogue.test" clientAuth
    DOCROOT="$WORK/www"
    mkdir -p "$DOCROOT"
    printf 'hello from openssl s_server\n' >"$DOCROOT/index.html"
}

# --------------------------------------------------------------------------
# building blocks
# --------------------------------------------------------------------------
ALPN_TCP="istio-peer-exchange,istio"
ALPN_HTTP="istio-http/1.1,istio,http/1.1"
SNI_HTTPBIN_8000="outbound_.8000_._.httpbin.bar.svc.cluster.local"
SNI_HTTPBIN_443="outbound_.443_._.httpbin.bar.svc.cluster.local"
SPIFFE_HTTPBIN="spiffe://cluster.local/ns/bar/sa/httpbin"

# klog NAME : a fresh key-log file name (called in $(...), so no shared counter)
klog() { echo "$KEYS/$1.$(date +%s%N).keys"; }

# inbound sidecar of the httpbin pod: mesh_in strict|permissive COUNT [extra args]
mesh_in() {
    local mode=$1 count=$2
    shift 2
    in_pod_bg httpbin sidecar-in "$PY" "$LIB/sidecar.py" --name httpbin-inbound \
        --listen 0.0.0.0:15006 --count "$count" --downstream "mesh-$mode" --protocol auto \
        --down-cert "$PKI/httpbin.chain" --down-key "$PKI/httpbin.key" --down-ca "$PKI/mesh-root.pem" \
        --source 127.0.0.6 --xfcc "$SPIFFE_HTTPBIN" --keylog "$(klog sidecar-in)" "$@"
    wait_until 10 listening httpbin 15006
}

# outbound sidecar of the sleep pod, Istio mTLS: mesh_out tcp|http COUNT SNI UPSTREAM [extra]
mesh_out() {
    local proto=$1 count=$2 sni=$3 upstream=$4 alpn=$ALPN_TCP
    shift 4
    [[ $proto == http ]] && alpn=$ALPN_HTTP
    in_pod_bg sleep sidecar-out "$PY" "$LIB/sidecar.py" --name sleep-outbound \
        --listen 127.0.0.1:15001 --count "$count" --protocol "$proto" \
        --upstream "$upstream" --upstream-tls mtls --sni "$sni" --alpn "$alpn" \
        --up-cert "$PKI/sleep.chain" --up-key "$PKI/sleep.key" --up-ca "$PKI/mesh-root.pem" \
        --keylog "$(klog sidecar-out)" "$@"
    wait_until 10 listening sleep 15001
}

# outbound sidecar of the sleep pod with user TLS origination (DestinationRule SIMPLE/MUTUAL)
origin_out() { # PROTO MODE UPSTREAM SNI [extra]
    local proto=$1 mode=$2 upstream=$3 sni=$4
    shift 4
    in_pod_bg sleep sidecar-out "$PY" "$LIB/sidecar.py" --name sleep-outbound \
        --listen 127.0.0.1:15001 --count 1 --protocol "$proto" \
        --upstream "$upstream" --upstream-tls "$mode" --sni "$sni" --keylog "$(klog sidecar-out)" "$@"
    wait_until 10 listening sleep 15001
}

app_http() { # POD PORT COUNT [extra]
    local pod=$1 port=$2 count=$3
    shift 3
    in_pod_bg "$pod" "app-http-$port" "$PY" "$LIB/apps.py" http --port "$port" --count "$count" \
        --server-name "$pod" --body "hello from $pod" "$@"
    wait_until 10 listening "$pod" "$port"
}

app_https() { # POD PORT COUNT CERTNAME [extra]
    local pod=$1 port=$2 count=$3 cert=$4
    shift 4
    in_pod_bg "$pod" "app-https-$port" "$PY" "$LIB/apps.py" https --port "$port" --count "$count" \
        --server-name "$pod" --body "hello from $pod over app TLS" \
        --cert "$PKI/$cert.pem" --key "$PKI/$cert.key" --keylog "$(klog "app-$pod")" "$@"
    wait_until 10 listening "$pod" "$port"
}

s_server_bg() { # POD PORT ARGS... : openssl s_server -WWW for one connection
    local pod=$1 port=$2
    shift 2
    SEQ=$((SEQ + 1))
    (cd "$DOCROOT" && exec timeout -k 5 60 ip netns exec "$(ns "$pod")" openssl s_server -WWW -naccept 1 \
        -accept "${IP[$pod]}:$port" -keylogfile "$KEYS/s_server.$SEQ.keys" "$@") \
        >"$WORK/s_server.$SEQ.log" 2>&1 &
    PIDS+=("$!")
    SRV_PIDS+=("$!")
    wait_until 10 listening "$pod" "$port"
}

# curl from a pod. The meshed app (sleep) binds its pod IP and connects to the
# sidecar's 127.0.0.1:15001 directly (--connect-to) instead of being REDIRECTed.
curl_sleep() {
    local out=$1
    shift
    SSLKEYLOGFILE="$(klog curl)" in_pod sleep curl -sS -m 10 -A curl/7.88.1 --interface "${IP[sleep]}" \
        --connect-to ::127.0.0.1:15001 "$@" >"$out" 2>&1
}
curl_pod() { # POD OUT ARGS...
    local pod=$1 out=$2
    shift 2
    SSLKEYLOGFILE="$(klog curl)" in_pod "$pod" curl -sS -m 10 -A curl/7.88.1 "$@" >"$out" 2>&1
}
need() { # FILE PATTERN : the client output must contain PATTERN
    grep -q -- "$2" "$1" || {
        echo "!!! $1 does not contain '$2':" >&2
        cat "$1" >&2
        tail -n 20 "$WORK"/*."$SEQ".log >&2 2>/dev/null || true
        return 1
    }
}

# --------------------------------------------------------------------------
# scenarios
# --------------------------------------------------------------------------
s01() {
    log "s01 plaintext-in-mesh: non-mesh pod -> PERMISSIVE httpbin, plaintext HTTP; httpbin eth0 only"
    app_http httpbin 8080 1
    mesh_in permissive 1
    capture httpbin eth0 "$WORK/s01.pcap"
    curl_pod legacy "$WORK/s01.out" http://httpbin.bar.svc.cluster.local:8000/get \
        --connect-to ::"${IP[httpbin]}":8080
    stop_servers
    stop_captures
    need "$WORK/s01.out" "hello from httpbin"
    publish "$WORK/s01.pcap" plaintext-in-mesh-eth0.pcap
}

s02() {
    log "s02 strict-rejected-plaintext: non-mesh pod -> STRICT httpbin, RST"
    mesh_in strict 1
    capture httpbin any "$WORK/s02.pcap"
    expect_rc 56 curl_pod legacy "$WORK/s02.out" http://httpbin.bar.svc.cluster.local:8000/get \
        --connect-to ::"${IP[httpbin]}":8080
    stop_servers
    stop_captures
    need "$WORK/s02.out" "Connection reset by peer"
    publish "$WORK/s02.pcap" strict-rejected-plaintext.pcap
}

s03() {
    log "s03 tls-to-plaintext-port: HTTPS to the sidecar's HTTP listener (400 DPE) and to a plaintext pod port"
    # (A) app speaks HTTPS to a service port declared http: the client sidecar answers 400 itself.
    in_pod_bg sleep sidecar-out "$PY" "$LIB/sidecar.py" --name sleep-outbound --listen 127.0.0.1:15001 \
        --count 1 --protocol http --upstream "${IP[httpbin]}:8080" --upstream-tls mtls \
        --sni "$SNI_HTTPBIN_8000" --alpn "$ALPN_HTTP" --up-cert "$PKI/sleep.chain" --up-key "$PKI/sleep.key" \
        --up-ca "$PKI/mesh-root.pem"
    wait_until 10 listening sleep 15001
    # (B) openssl s_client to httpbin's excluded plaintext port 9080.
    app_http httpbin 9080 1
    capture sleep any "$WORK/s03.pcap"
    expect_rc 35 curl_sleep "$WORK/s03a.out" --cacert "$PKI/web-ca.pem" https://httpbin.bar.svc.cluster.local:8000/get
    sleep 0.3
    expect_rc 1 in_pod sleep openssl s_client -connect "${IP[httpbin]}:9080" -servername httpbin.bar.svc.cluster.local \
        -alpn http/1.1 -CAfile "$PKI/web-ca.pem" </dev/null >"$WORK/s03b.out" 2>&1
    stop_servers
    stop_captures
    need "$WORK/s03a.out" "wrong version number"
    need "$WORK/s03b.out" "wrong version number"
    publish "$WORK/s03.pcap" tls-to-plaintext-port.pcap
}

s04() {
    log "s04 plaintext-to-tls-port: plaintext HTTP to GnuTLS (alert) and OpenSSL/Python ssl (silent RST) TLS ports"
    SEQ=$((SEQ + 1))
    run_bg "$WORK/gnutls.$SEQ.log" ip netns exec "$(ns httpbin)" gnutls-serv --http --port 9444 \
        --x509certfile "$PKI/app-httpbin.pem" --x509keyfile "$PKI/app-httpbin.key"
    SRV_PIDS+=("$BG_PID")
    wait_until 10 listening httpbin 9444
    # The OpenSSL library (here under Python's ssl, as under Envoy's BoringSSL) sends no
    # alert when the first record is not TLS ("http request"): it reads the 5-byte record
    # header and gives up, the server closes with the rest unread and the kernel sends RST.
    # (openssl s_server instead shuts down with FIN and drains: curl exit 52.)
    app_https httpbin 9445 1 app-httpbin
    capture httpbin any "$WORK/s04.pcap"
    # curl: "Received HTTP/0.9 when not allowed" (exit 1): the 7-byte alert is not HTTP.
    expect_rc 1 curl_pod legacy "$WORK/s04a.out" http://httpbin.bar.svc.cluster.local:9444/ \
        --connect-to ::"${IP[httpbin]}":9444
    sleep 0.3
    expect_rc 56 curl_pod legacy "$WORK/s04b.out" http://httpbin.bar.svc.cluster.local:9445/ \
        --connect-to ::"${IP[httpbin]}":9445
    stop_servers 1
    stop_captures
    need "$WORK/s04a.out" "HTTP/0.9"
    need "$WORK/s04b.out" "reset by peer"
    publish "$WORK/s04.pcap" plaintext-to-tls-port.pcap
}

# generic TLS failures at the ingress gateway, client on the internet
gw_curl() { # OUT ARGS...
    local out=$1
    shift
    curl_pod internet "$out" --resolve "httpbin.example.com:443:${IP[gateway]}" \
        --resolve "httpbin.example.com:8443:${IP[gateway]}" --resolve "httpbin.example.com:9443:${IP[gateway]}" "$@"
}

s05() {
    log "s05 untrusted-ca: client rejects the gateway certificate: TLS 1.3 (curl, GnuTLS) and TLS 1.2"
    s_server_bg gateway 443 -tls1_3 -cert "$PKI/gw-rogue.pem" -key "$PKI/gw-rogue.key"
    capture gateway any "$WORK/s05a.pcap"
    expect_rc 60 gw_curl "$WORK/s05a.out" --cacert "$PKI/web-ca.pem" https://httpbin.example.com/
    stop_servers 1
    stop_captures
    need "$WORK/s05a.out" "unable to get local issuer certificate"
    publish "$WORK/s05a.pcap" untrusted-ca-tls13.pcap

    s_server_bg gateway 443 -tls1_2 -cert "$PKI/gw-rogue.pem" -key "$PKI/gw-rogue.key"
    capture gateway any "$WORK/s05b.pcap"
    expect_rc 60 gw_curl "$WORK/s05b.out" --cacert "$PKI/web-ca.pem" https://httpbin.example.com/
    stop_servers 1
    stop_captures
    need "$WORK/s05b.out" "unable to get local issuer certificate"
    publish "$WORK/s05b.pcap" untrusted-ca-tls12.pcap

    # OpenSSL clients (curl above) send the TLS 1.3 alert in clear: they have not yet
    # switched to the handshake keys when the certificate check fails. GnuTLS sends CCS
    # and then the alert encrypted (19-byte type-23 record): nothing says which alert.
    s_server_bg gateway 443 -tls1_3 -cert "$PKI/gw-rogue.pem" -key "$PKI/gw-rogue.key"
    capture gateway any "$WORK/s05c.pcap"
    SSLKEYLOGFILE="$(klog gnutls-cli)" expect_rc 1 in_pod internet gnutls-cli --x509cafile "$PKI/web-ca.pem" \
        --sni-hostname httpbin.example.com --verify-hostname httpbin.example.com --alpn http/1.1 \
        -p 443 "${IP[gateway]}" </dev/null >"$WORK/s05c.out" 2>&1
    stop_servers 1
    stop_captures
    need "$WORK/s05c.out" "verification of server certificate failed"
    publish "$WORK/s05c.pcap" untrusted-ca-tls13-encrypted-alert.pcap
}

s06() {
    log "s06 bad-certificate: TLS 1.2, certificate for other.example.com, client wants httpbin.example.com"
    s_server_bg gateway 443 -tls1_2 -cert "$PKI/gw-other.pem" -key "$PKI/gw-other.key"
    capture gateway any "$WORK/s06.pcap"
    # OpenSSL checks the name inside the handshake (X509_VERIFY_PARAM host) and sends
    # bad_certificate; curl 7.88 checks it only after the handshake, so s_client here.
    expect_rc 1 in_pod internet openssl s_client -connect "${IP[gateway]}:443" -tls1_2 \
        -servername httpbin.example.com -verify_hostname httpbin.example.com \
        -CAfile "$PKI/web-ca.pem" -verify_return_error -keylogfile "$(klog s_client)" \
        </dev/null >"$WORK/s06.out" 2>&1
    stop_servers 1
    stop_captures
    need "$WORK/s06.out" "hostname mismatch"
    publish "$WORK/s06.pcap" bad-certificate-tls12.pcap
}

s07() {
    log "s07 client-cert-required: MUTUAL server, client without certificate (TLS 1.2 and 1.3)"
    s_server_bg gateway 443 -tls1_2 -Verify 1 -verify_return_error -CAfile "$PKI/partner-ca.pem" \
        -cert "$PKI/gw-httpbin.pem" -key "$PKI/gw-httpbin.key"
    capture gateway any "$WORK/s07a.pcap"
    expect_rc "56|35" gw_curl "$WORK/s07a.out" --cacert "$PKI/web-ca.pem" https://httpbin.example.com/
    stop_servers 1
    stop_captures
    need "$WORK/s07a.out" "handshake failure"
    publish "$WORK/s07a.pcap" client-cert-required-tls12.pcap

    s_server_bg gateway 443 -tls1_3 -Verify 1 -verify_return_error -CAfile "$PKI/partner-ca.pem" \
        -cert "$PKI/gw-httpbin.pem" -key "$PKI/gw-httpbin.key"
    capture gateway any "$WORK/s07b.pcap"
    expect_rc 56 gw_curl "$WORK/s07b.out" --cacert "$PKI/web-ca.pem" https://httpbin.example.com/
    stop_servers 1
    stop_captures
    need "$WORK/s07b.out" "certificate required"
    publish "$WORK/s07b.pcap" client-cert-required-tls13.pcap
}

s08() {
    log "s08 server-internal-error: SNI callback fails, plaintext alert internal_error(80)"
    app_https gateway 443 1 gw-httpbin --sni-fail
    capture gateway any "$WORK/s08.pcap"
    expect_rc 35 gw_curl "$WORK/s08.out" --cacert "$PKI/web-ca.pem" https://httpbin.example.com/
    stop_servers 1
    stop_captures
    need "$WORK/s08.out" "internal error"
    publish "$WORK/s08.pcap" server-internal-error.pcap
}

s09() {
    log "s09 no-server-hello: ClientHello answered by FIN (:443) and by RST (:8443)"
    in_pod_bg gateway closer-fin "$PY" "$LIB/apps.py" closer --port 443 --count 1
    in_pod_bg gateway closer-rst "$PY" "$LIB/apps.py" closer --port 8443 --count 1 --rst
    wait_until 10 listening gateway 443
    wait_until 10 listening gateway 8443
    capture gateway any "$WORK/s09.pcap"
    expect_rc 35 gw_curl "$WORK/s09a.out" --cacert "$PKI/web-ca.pem" https://httpbin.example.com/
    sleep 0.3
    expect_rc 35 gw_curl "$WORK/s09b.out" --cacert "$PKI/web-ca.pem" https://httpbin.example.com:8443/
    stop_servers 1
    stop_captures
    need "$WORK/s09a.out" "SSL_ERROR_SYSCALL\|unexpected eof"
    need "$WORK/s09b.out" "reset by peer\|SSL_ERROR_SYSCALL"
    publish "$WORK/s09.pcap" no-server-hello.pcap
}

s09i() {
    log "s09i handshake-incomplete: ClientHello never answered; capture stops while the client waits"
    in_pod_bg gateway closer-hold "$PY" "$LIB/apps.py" closer --port 9443 --count 1 --hold 8
    wait_until 10 listening gateway 9443
    capture gateway any "$WORK/s09i.pcap"
    gw_curl "$WORK/s09i.out" -m 4 --cacert "$PKI/web-ca.pem" https://httpbin.example.com:9443/ &
    local cpid=$!
    sleep 1.5
    stop_captures
    wait "$cpid" || true
    stop_servers 0
    need "$WORK/s09i.out" "timed out"
    publish "$WORK/s09i.pcap" handshake-incomplete.pcap
}

s10() {
    log "s10 istio-alpn-to-non-mesh-tls: Istio HTTP ALPN + hostname SNI (DR SIMPLE, Istio < 1.20); sleep eth0 only"
    capture sleep eth0 "$WORK/s10.pcap"
    # (A) external server with ALPN h2 only: OpenSSL answers no_application_protocol(120).
    s_server_bg external 443 -alpn h2 -cert "$PKI/ext-api.pem" -key "$PKI/ext-api.key"
    origin_out http simple "${IP[external]}:443" api.external.test --alpn "$ALPN_HTTP"
    curl_sleep "$WORK/s10a.out" http://api.external.test/
    stop_servers 1
    need "$WORK/s10a.out" "503\|upstream connect error"
    # (B) in-mesh HTTPS app: the server sidecar sees the Istio ALPN, terminates and wants a
    # client certificate (TLS 1.3 certificate_required, encrypted).
    app_https httpbin 443 1 app-httpbin
    mesh_in permissive 1
    origin_out http simple "${IP[httpbin]}:443" httpbin.bar.svc.cluster.local --alpn "$ALPN_HTTP"
    curl_sleep "$WORK/s10b.out" http://httpbin.bar.svc.cluster.local:443/
    stop_servers 1
    stop_captures
    need "$WORK/s10a.out" "NO_APPLICATION_PROTOCOL\|no application protocol"
    need "$WORK/s10b.out" "certificate required\|upstream connect error"
    publish "$WORK/s10.pcap" istio-alpn-to-non-mesh-tls-eth0.pcap
}

s11a() {
    log "s11a mesh HTTP mTLS: plaintext app -> sidecar -> mTLS -> sidecar -> plaintext app (both pods, -i any)"
    app_http httpbin 8080 1
    mesh_in permissive 1
    mesh_out http 1 "$SNI_HTTPBIN_8000" "${IP[httpbin]}:8080"
    capture sleep any "$WORK/s11a-c.pcap"
    capture httpbin any "$WORK/s11a-s.pcap"
    curl_sleep "$WORK/s11a.out" http://httpbin.bar.svc.cluster.local:8000/get
    stop_servers
    stop_captures
    need "$WORK/s11a.out" "hello from httpbin"
    publish "$WORK/s11a-c.pcap" mesh-http-mtls-client-pod.pcap
    publish "$WORK/s11a-s.pcap" mesh-http-mtls-server-pod.pcap
}

s11b() {
    log "s11b app HTTPS without mesh: non-mesh client -> app TLS on an excluded port (2nd connection resumed)"
    app_https httpbin 9443 2 app-httpbin --num-tickets 2
    capture legacy any "$WORK/s11b.pcap"
    curl_pod legacy "$WORK/s11b.out" --cacert "$PKI/web-ca.pem" \
        --resolve "httpbin.bar.svc.cluster.local:9443:${IP[httpbin]}" \
        https://httpbin.bar.svc.cluster.local:9443/get https://httpbin.bar.svc.cluster.local:9443/get
    stop_servers
    stop_captures
    need "$WORK/s11b.out" "hello from httpbin over app TLS"
    grep -q "resumed=True" "$WORK"/app-https-9443.*.log || die "s11b: second connection was not resumed"
    publish "$WORK/s11b.pcap" app-https-no-mesh.pcap
}

s11c() {
    log "s11c double-wrapped: app HTTPS -> sidecar TCP-mode mTLS -> sidecar -> app TLS (3 captures)"
    app_https httpbin 443 1 app-httpbin --alpn http/1.1 --num-tickets 2
    mesh_in permissive 1
    mesh_out tcp 1 "$SNI_HTTPBIN_443" "${IP[httpbin]}:443"
    capture sleep any "$WORK/s11c-any.pcap"
    capture sleep eth0 "$WORK/s11c-eth0.pcap"
    capture httpbin any "$WORK/s11c-srv.pcap"
    curl_sleep "$WORK/s11c.out" --cacert "$PKI/web-ca.pem" https://httpbin.bar.svc.cluster.local/get
    stop_servers
    stop_captures
    need "$WORK/s11c.out" "hello from httpbin over app TLS"
    publish "$WORK/s11c-any.pcap" double-wrapped-client-pod-any.pcap
    publish "$WORK/s11c-eth0.pcap" double-wrapped-client-pod-eth0.pcap
    publish "$WORK/s11c-srv.pcap" double-wrapped-server-pod-any.pcap
}

s11e() {
    log "s11e PERMISSIVE TLS pass-through: non-mesh client's app TLS passes the sidecar untouched"
    app_https httpbin 443 1 app-httpbin --alpn http/1.1
    mesh_in permissive 1
    capture httpbin any "$WORK/s11e.pcap"
    curl_pod legacy "$WORK/s11e.out" --cacert "$PKI/web-ca.pem" \
        --resolve "httpbin.bar.svc.cluster.local:443:${IP[httpbin]}" https://httpbin.bar.svc.cluster.local/get
    stop_servers
    stop_captures
    need "$WORK/s11e.out" "hello from httpbin over app TLS"
    publish "$WORK/s11e.pcap" permissive-tls-passthrough.pcap
}

s12() {
    log "s12a PERMISSIVE namespace: plaintext client and mTLS client to httpbin"
    app_http httpbin 8080 2
    mesh_in permissive 2
    mesh_out http 1 "$SNI_HTTPBIN_8000" "${IP[httpbin]}:8080"
    capture httpbin any "$WORK/s12a.pcap"
    curl_pod legacy "$WORK/s12a1.out" http://httpbin.bar.svc.cluster.local:8000/get \
        --connect-to ::"${IP[httpbin]}":8080
    sleep 0.5
    curl_sleep "$WORK/s12a2.out" http://httpbin.bar.svc.cluster.local:8000/get
    stop_servers
    stop_captures
    need "$WORK/s12a1.out" "hello from httpbin"
    need "$WORK/s12a2.out" "hello from httpbin"
    publish "$WORK/s12a.pcap" permissive-namespace.pcap

    log "s12b STRICT namespace: mTLS client accepted, plaintext client reset"
    app_http httpbin 8080 1
    mesh_in strict 2
    mesh_out http 1 "$SNI_HTTPBIN_8000" "${IP[httpbin]}:8080"
    capture httpbin any "$WORK/s12b.pcap"
    curl_sleep "$WORK/s12b1.out" http://httpbin.bar.svc.cluster.local:8000/get
    sleep 0.5
    expect_rc 56 curl_pod legacy "$WORK/s12b2.out" http://httpbin.bar.svc.cluster.local:8000/get \
        --connect-to ::"${IP[httpbin]}":8080
    stop_servers
    stop_captures
    need "$WORK/s12b1.out" "hello from httpbin"
    need "$WORK/s12b2.out" "reset by peer"
    publish "$WORK/s12b.pcap" strict-namespace.pcap
}

# ingress gateway stand-in: gateway_bg simple|mutual MAXVER COUNT
gateway_bg() {
    local mode=$1 maxv=$2 count=$3 extra=()
    [[ $mode == mutual ]] && extra=(--down-ca "$PKI/partner-ca.pem")
    in_pod_bg gateway gateway "$PY" "$LIB/sidecar.py" --name ingressgateway \
        --listen "${IP[gateway]}:443" --count "$count" --downstream "tls-$mode" --down-max "$maxv" \
        --down-cert "$PKI/gw-httpbin.chain" --down-key "$PKI/gw-httpbin.key" --down-alpn http/1.1 \
        --protocol http --upstream "${IP[httpbin]}:8080" --upstream-tls mtls --sni "$SNI_HTTPBIN_8000" \
        --alpn "$ALPN_HTTP" --up-cert "$PKI/ingressgw.chain" --up-key "$PKI/ingressgw.key" \
        --up-ca "$PKI/mesh-root.pem" --keylog "$(klog gateway)" "${extra[@]}"
    wait_until 10 listening gateway 443
}

s13() {
    log "s13a ingress gateway SIMPLE (TLS 1.3) -> mesh mTLS to httpbin"
    app_http httpbin 8080 1
    mesh_in permissive 1
    gateway_bg simple 1.3 1
    capture gateway any "$WORK/s13a.pcap"
    gw_curl "$WORK/s13a.out" --cacert "$PKI/web-ca.pem" https://httpbin.example.com/get
    stop_servers
    stop_captures
    need "$WORK/s13a.out" "hello from httpbin"
    publish "$WORK/s13a.pcap" gateway-simple.pcap

    log "s13b ingress gateway MUTUAL (TLS 1.2, client certificate visible) -> mesh mTLS"
    app_http httpbin 8080 1
    mesh_in permissive 1
    gateway_bg mutual 1.2 1
    capture gateway any "$WORK/s13b.pcap"
    gw_curl "$WORK/s13b.out" --cacert "$PKI/web-ca.pem" --cert "$PKI/partner-client.pem" \
        --key "$PKI/partner-client.key" https://httpbin.example.com/get
    stop_servers
    stop_captures
    need "$WORK/s13b.out" "hello from httpbin"
    publish "$WORK/s13b.pcap" gateway-mutual-tls12.pcap

    log "s13c ingress gateway MUTUAL (TLS 1.2), client certificate from an untrusted CA -> unknown_ca"
    gateway_bg mutual 1.2 1
    capture gateway any "$WORK/s13c.pcap"
    expect_rc "56|35" gw_curl "$WORK/s13c.out" --cacert "$PKI/web-ca.pem" --cert "$PKI/rogue-client.pem" \
        --key "$PKI/rogue-client.key" https://httpbin.example.com/get
    stop_servers 1
    stop_captures
    need "$WORK/s13c.out" "unknown ca"
    publish "$WORK/s13c.pcap" gateway-mutual-untrusted-ca-tls12.pcap
}

s14() {
    log "s14 sidecar TLS origination with a client certificate (DR MUTUAL, TLS 1.2) to an external server"
    app_https external 443 1 ext-api --client-ca "$PKI/partner-ca.pem"
    origin_out http mutual "${IP[external]}:443" api.external.test --alpn http/1.1 --up-max 1.2 \
        --up-cert "$PKI/sleep-egress.chain" --up-key "$PKI/sleep-egress.key" --up-ca "$PKI/web-ca.pem" \
        --up-verify-hostname
    capture sleep any "$WORK/s14.pcap"
    curl_sleep "$WORK/s14.out" http://api.external.test/
    stop_servers
    stop_captures
    need "$WORK/s14.out" "hello from external over app TLS"
    publish "$WORK/s14.pcap" sidecar-tls-origination.pcap
}

s15() {
    log "s15 Istio mTLS in TLS 1.2 (COMPLIANCE_POLICY=fips-140-2-like): SPIFFE certificates visible"
    app_http httpbin 8080 1
    mesh_in permissive 1 --down-max 1.2
    mesh_out http 1 "$SNI_HTTPBIN_8000" "${IP[httpbin]}:8080" --up-max 1.2
    capture httpbin any "$WORK/s15-s.pcap"
    capture sleep any "$WORK/s15-c.pcap"
    curl_sleep "$WORK/s15.out" http://httpbin.bar.svc.cluster.local:8000/get
    stop_servers
    stop_captures
    need "$WORK/s15.out" "hello from httpbin"
    publish "$WORK/s15-s.pcap" istio-mtls-tls12-server-pod.pcap
    publish "$WORK/s15-c.pcap" istio-mtls-tls12-client-pod.pcap
}

s16() {
    log "s16 capture starts mid-connection: pooled mTLS connection, handshake not in the capture"
    app_http httpbin 8080 1 --requests 2
    mesh_in permissive 1
    mesh_out http 1 "$SNI_HTTPBIN_8000" "${IP[httpbin]}:8080"
    in_pod sleep "$PY" "$LIB/apps.py" client --source "${IP[sleep]}" --connect 127.0.0.1:15001 \
        --host httpbin.bar.svc.cluster.local:8000 --requests 2 --gap 2.0 >"$WORK/s16.out" 2>&1 &
    local cpid=$!
    sleep 1.0
    capture sleep any "$WORK/s16.pcap"
    wait "$cpid"
    stop_servers
    stop_captures
    [[ $(grep -c "hello from httpbin" "$WORK/s16.out") == 2 ]] || {
        cat "$WORK/s16.out" >&2
        die "s16: expected two responses"
    }
    publish "$WORK/s16.pcap" mesh-mtls-midstream.pcap
}

s17() {
    log "s17 double TLS: app HTTPS + sidecar SIMPLE origination to the same server (wrong version number)"
    app_https external 443 1 ext-api
    origin_out tcp simple "${IP[external]}:443" api.external.test --up-ca "$PKI/web-ca.pem" --up-verify-hostname
    capture sleep any "$WORK/s17.pcap"
    expect_rc 35 curl_sleep "$WORK/s17.out" --cacert "$PKI/web-ca.pem" https://api.external.test/
    stop_servers
    stop_captures
    need "$WORK/s17.out" "wrong version number"
    publish "$WORK/s17.pcap" double-tls-origination.pcap
}

ALL=(s01 s02 s03 s04 s05 s06 s07 s08 s09 s09i s10 s11a s11b s11c s11e s12 s13 s14 s15 s16 s17)

# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------
make_pki
setup_topology
for s in ${ONLY:-${ALL[@]}}; do
    SEQ=$((SEQ + 1))
    "$s"
done
del_netns

log "verification (tshark + TLS key logs)"
cat "$KEYS"/*.keys >"$WORK/all.keys" 2>/dev/null || : >"$WORK/all.keys"
"$PY" "$LIB/check_expected.py" --dir "$HERE" --expected "$HERE/expected.json" \
    --keylog "$WORK/all.keys" ${ONLY:+--only "${PUBLISHED[*]}"}
