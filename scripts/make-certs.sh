#!/bin/sh
# make-certs.sh [--host NAME]... [--days N] DIR [CLIENT...]: creates, with the
# openssl CLI, what a quotebus ingest with mutual TLS needs (tls+tcp://):
#
#   DIR/ca.pem  DIR/ca.key           a private CA (keep ca.key offline if you can)
#   DIR/broker.pem DIR/broker.key    the broker's certificate: server names
#                                    localhost, broker, 127.0.0.1 and every --host
#   DIR/CLIENT.pem DIR/CLIENT.key    one client certificate per CLIENT
#                                    (default: adapter binance htx bithumb)
#
# Broker:  quotebus-broker --ingest tls+tcp://0.0.0.0:7783 --ingest-tls-cert DIR/broker.pem
#            --ingest-tls-key DIR/broker.key --ingest-tls-ca DIR/ca.pem
# Adapter: quotebus-adapter --broker tls+tcp://broker:7783 --broker-tls-ca DIR/ca.pem
#            --broker-tls-cert DIR/binance.pem --broker-tls-key DIR/binance.key binance
#
# Run it again to add clients or hosts: an existing CA is reused and existing
# certificates are kept (--force replaces the broker's and the clients').
# Notes: NNG's TLS (mbedTLS 2.28) matches a dialed host only against DNS
# names, so an IP address is written both as IP and as DNS name. The broker's
# certificate is also a client certificate (clientAuth): the broker dials its
# own listener with it to check that the listener still accepts. Keys are
# written mode 0600 and DIR mode 0700, owned by whoever runs this (in the
# docker-compose deployment, the quotebus user of the image).
set -eu
usage() {
    echo "usage: $0 [--host NAME]... [--days N] [--force] DIR [CLIENT...]" >&2
    exit 2
}
hosts="localhost broker 127.0.0.1"
days=825
force=0
while [ $# -gt 0 ]; do
    case $1 in
    --host) [ $# -ge 2 ] || usage; hosts="$hosts $2"; shift 2 ;;
    --days) [ $# -ge 2 ] || usage; days=$2; shift 2 ;;
    --force) force=1; shift ;;
    -h | --help) usage ;;
    --*) usage ;;
    *) break ;;
    esac
done
[ $# -ge 1 ] || usage
out=$1
shift
clients=${*:-adapter binance htx bithumb}
command -v openssl >/dev/null || { echo "$0: openssl not found (apt-get install openssl)" >&2; exit 1; }
umask 077
mkdir -p "$out"
chmod 700 "$out"
cd "$out"

if [ ! -f ca.pem ] || [ ! -f ca.key ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 -days 3650 \
        -keyout ca.key -out ca.pem -subj "/CN=quotebus private CA" \
        -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    echo "created $out/ca.pem"
fi

# sign NAME EKU SAN: NAME.pem and NAME.key signed by the CA.
sign() {
    if [ "$force" = 0 ] && [ -f "$1.pem" ] && [ -f "$1.key" ]; then
        echo "kept    $out/$1.pem"
        return
    fi
    {
        echo "basicConstraints = critical, CA:FALSE"
        echo "keyUsage = critical, digitalSignature"
        echo "extendedKeyUsage = $2"
        [ -n "$3" ] && echo "subjectAltName = $3"
    } > "$1.ext"
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 \
        -keyout "$1.key" -out "$1.csr" -subj "/CN=$1" 2>/dev/null
    openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial \
        -out "$1.pem" -days "$days" -sha256 -extfile "$1.ext" 2>/dev/null
    rm -f "$1.csr" "$1.ext"
    chmod 600 "$1.key"
    chmod 644 "$1.pem"
    echo "created $out/$1.pem"
}

san=""
for h in $hosts; do
    case $h in
    *[!0-9.]*) case $h in *:*) entry="IP:$h" ;; *) entry="DNS:$h" ;; esac ;;
    *) entry="IP:$h, DNS:$h" ;;
    esac
    san="${san:+$san, }$entry"
done
sign broker "serverAuth, clientAuth" "$san"
for c in $clients; do
    case $c in
    broker | ca | *[!A-Za-z0-9._-]*) echo "$0: bad client name '$c'" >&2; exit 2 ;;
    esac
    sign "$c" clientAuth "DNS:$c"
done
rm -f ca.srl
chmod 644 ca.pem
