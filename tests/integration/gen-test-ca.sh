#!/bin/sh
# gen-test-ca.sh OUTDIR: creates, with the openssl CLI, a throw-away test CA
# and a server certificate for localhost / 127.0.0.1 / ::1 signed by it:
#
#   OUTDIR/ca.pem  OUTDIR/ca.key       the test CA (trust ca.pem in clients)
#   OUTDIR/server.pem OUTDIR/server.key  the server's certificate and key
#
# Run at test time only; never commit the output (keys).
set -eu
if [ $# -ne 1 ]; then
    echo "usage: $0 OUTDIR" >&2
    exit 2
fi
out=$1
mkdir -p "$out"
cd "$out"
umask 077
ext=server.ext
cat > "$ext" <<'EXT'
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1
EXT
openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 2 \
    -keyout ca.key -out ca.pem -subj "/CN=quotebus test CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -sha256 \
    -keyout server.key -out server.csr -subj "/CN=localhost" 2>/dev/null
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
    -out server.pem -days 2 -sha256 -extfile "$ext" 2>/dev/null
rm -f server.csr "$ext" ca.srl
chmod 644 ca.pem server.pem
echo "$out/ca.pem $out/server.pem $out/server.key"
