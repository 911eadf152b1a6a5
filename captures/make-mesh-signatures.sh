#!/usr/bin/env bash
# make-mesh-signatures.sh - captures of the other meshes' on-wire signatures.
#
# OpenSSL s_server/s_client on loopback, recorded by tcpdump, speaking with the names
# and ALPN that Linkerd, Consul Connect and Istio ambient (HBONE) put on the wire (see
# the mesh reference): the TLS stacks are real, only the names are chosen.
#   linkerd-identity-sni.pcap   TLS 1.3, SNI <sa>.<ns>.serviceaccount.identity.linkerd.cluster.local, no ALPN, port 4143
#   consul-connect-sni.pcap     TLS 1.2, SNI <svc>.default.dc1.internal.<uuid>.consul, port 20000
#   hbone-ztunnel-like.pcap     TLS 1.3 only, ALPN h2, no SNI, AES-256 then AES-128 suites, port 15008
# Usage: sudo captures/make-mesh-signatures.sh   (root: tcpdump)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
[[ $(id -u) -eq 0 ]] || { echo "must run as root (tcpdump)" >&2; exit 1; }
for c in tcpdump openssl timeout; do
    command -v "$c" >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q tcpdump openssl coreutils; break; }
done
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
    -subj "/O=cluster.local" -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null

# capture NAME PORT SERVER_ARGS CLIENT_ARGS
capture() {
    local name=$1 port=$2 sargs=$3 cargs=$4
    timeout -k 5 20 tcpdump -i lo -U --immediate-mode -Z root -w "$HERE/$name" "tcp port $port" 2>/dev/null &
    local dump=$!
    sleep 1
    # shellcheck disable=SC2086
    timeout -k 5 15 openssl s_server -accept "127.0.0.1:$port" -cert "$WORK/cert.pem" -key "$WORK/key.pem" -naccept 1 -quiet $sargs </dev/null >/dev/null 2>&1 &
    local srv=$!
    sleep 0.5
    # shellcheck disable=SC2086
    printf 'ping\n' | timeout -k 5 10 openssl s_client -connect "127.0.0.1:$port" -CAfile "$WORK/cert.pem" -quiet $cargs >/dev/null 2>&1 || true
    sleep 0.5
    kill "$srv" 2>/dev/null || true
    sleep 0.5
    kill -INT "$dump" 2>/dev/null || true
    wait "$dump" 2>/dev/null || true
}

capture linkerd-identity-sni.pcap 4143 "-tls1_3" "-tls1_3 -servername web.emojivoto.serviceaccount.identity.linkerd.cluster.local"
capture consul-connect-sni.pcap 20000 "-tls1_2" \
    "-tls1_2 -servername web.default.dc1.internal.0b3e1a8c-6f0e-4a5c-9c1e-5a9e7e2b7c11.consul"
capture hbone-ztunnel-like.pcap 15008 "-tls1_3 -alpn h2" \
    "-tls1_3 -noservername -alpn h2 -ciphersuites TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256"
ls -l "$HERE"/linkerd-identity-sni.pcap "$HERE"/consul-connect-sni.pcap "$HERE"/hbone-ztunnel-like.pcap
