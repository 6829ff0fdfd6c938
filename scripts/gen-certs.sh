#!/usr/bin/env bash
# Makes a private CA and a server certificate for Parley (ECDSA P-256, TLS 1.3 "modern" profile).
#
#   scripts/gen-certs.sh [DIR] [--name DNS_OR_IP]... [--days N] [--renew] [--force]
#
# DIR defaults to certs/. Files: ca.pem (give to clients), ca.key (keep private: it can issue
# certificates), server.pem (the leaf only: the server sends it, never the root), server.key.
# Keys are written under umask 077 (mode 0600). Nothing is overwritten without --force;
# --renew keeps the CA and issues a new server certificate (one command every <= 90 days).
set -euo pipefail

usage() { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; }

dir=""
names=()
days=90
force=0
renew=0
while [ $# -gt 0 ]; do
  case "$1" in
    --name) [ $# -ge 2 ] || { echo "gen-certs: --name needs a value" >&2; exit 64; }; names+=("$2"); shift 2 ;;
    --days) [ $# -ge 2 ] || { echo "gen-certs: --days needs a value" >&2; exit 64; }; days="$2"; shift 2 ;;
    --force) force=1; shift ;;
    --renew) renew=1; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "gen-certs: unknown option $1" >&2; usage >&2; exit 64 ;;
    *) [ -z "$dir" ] || { echo "gen-certs: only one DIR" >&2; exit 64; }; dir="$1"; shift ;;
  esac
done
dir="${dir:-$(cd "$(dirname "$0")/.." && pwd)/certs}"
if ! [[ "$days" =~ ^[0-9]+$ ]] || [ "$days" -lt 1 ] || [ "$days" -gt 90 ]; then
  echo "gen-certs: --days must be 1..90 (the modern profile caps server certificates at 90 days)" >&2
  exit 64
fi
command -v openssl >/dev/null || { echo "gen-certs: openssl not found (apt-get install openssl)" >&2; exit 69; }

umask 077
mkdir -p "$dir"
ca_key="$dir/ca.key"; ca_pem="$dir/ca.pem"; key="$dir/server.key"; pem="$dir/server.pem"

if [ $force = 0 ]; then
  if [ $renew = 1 ]; then
    [ -f "$ca_key" ] && [ -f "$ca_pem" ] || { echo "gen-certs: --renew needs $ca_key and $ca_pem" >&2; exit 66; }
  else
    for f in "$ca_key" "$ca_pem" "$key" "$pem"; do
      if [ -e "$f" ]; then
        echo "gen-certs: $f exists; use --renew for a new server certificate or --force to replace everything" >&2
        exit 73
      fi
    done
  fi
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if [ $renew = 0 ] || [ $force = 1 ]; then
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$tmp/ca.key" 2>/dev/null
  openssl req -x509 -new -key "$tmp/ca.key" -sha256 -days 730 -subj "/CN=Parley Local CA" \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -addext "subjectKeyIdentifier=hash" -out "$tmp/ca.pem"
else
  cp "$ca_key" "$tmp/ca.key"; cp "$ca_pem" "$tmp/ca.pem"
fi

san="DNS:localhost,IP:127.0.0.1,IP:::1"
for n in "${names[@]+"${names[@]}"}"; do
  if [[ "$n" =~ ^[0-9.]+$ || "$n" == *:* ]]; then san="$san,IP:$n"; else san="$san,DNS:$n"; fi
done
cat >"$tmp/ext.cnf" <<CNF
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = $san
authorityKeyIdentifier = keyid
subjectKeyIdentifier = hash
CNF
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$tmp/server.key" 2>/dev/null
openssl req -new -key "$tmp/server.key" -subj "/CN=localhost" -out "$tmp/server.csr"
openssl x509 -req -in "$tmp/server.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" \
  -set_serial "0x$(openssl rand -hex 16)" -days "$days" -sha256 -extfile "$tmp/ext.cnf" \
  -out "$tmp/server.pem" 2>/dev/null

install -m 600 "$tmp/ca.key" "$ca_key"
install -m 644 "$tmp/ca.pem" "$ca_pem"
install -m 600 "$tmp/server.key" "$key"
install -m 644 "$tmp/server.pem" "$pem"

until=$(openssl x509 -in "$pem" -noout -enddate | cut -d= -f2)
ca_until=$(openssl x509 -in "$ca_pem" -noout -enddate | cut -d= -f2)
echo "gen-certs: wrote to $dir"
echo "  ca.pem      private CA (give this to clients), valid until $ca_until"
echo "  ca.key      CA key, mode 600: keep it private"
echo "  server.pem  server certificate for $san"
echo "              valid until $until; renew with: scripts/gen-certs.sh $dir --renew"
echo "  server.key  server key, mode 600"
