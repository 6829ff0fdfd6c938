#!/usr/bin/env bash
# Fuzz every parser of untrusted input with libFuzzer + AddressSanitizer: the NIO-free core of
# ParleyProtocol (server frames, replies, events, private frames, typed commands). TLS records are
# parsed by OpenSSL, fuzzed by its own project.
# Usage: scripts/fuzz.sh [SECONDS]   (default 30, per target). Exits non-zero if libFuzzer finds a crash.
# Only top-level Sources/ParleyProtocol/*.swift are compiled: the NIO glue lives in NIO/ so the
# fuzzer needs no SwiftPM build products.
set -euo pipefail
seconds="${1:-30}"
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$root/fuzz-out"
mkdir -p "$out/corpus" "$out/artifacts"

# Seed corpus: one valid frame per message kind, so the fuzzer starts past the JSON syntax.
seed() { printf '%s' "$2" > "$out/corpus/$1"; }
seed login '{"type":"login","username":"alice","password":"correct horse","version":1,"id":1}'
seed message '{"type":"message","to":"bob","text":"hi \"there\" \u00e9\ud83d\ude00\n","id":2}'
seed whoelsesince '{"type":"whoelsesince","seconds":60}'
seed privateanswer '{"type":"privateanswer","user":"bob","accept":true,"port":4000,"fingerprint":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}'
seed reply '{"type":"reply","id":3,"status":"ok","users":["a","b"]}'
seed replyerr '{"type":"reply","status":"error","code":"wrong_password","message":"x"}'
seed event '{"type":"message","from":"bob","text":"yo","delivery":7,"sent":1700000000000}'
seed nested '{"a":[1,[2,{"b":null}]],"c":false,"d":-9223372036854775808}'
seed cmd 'message bob hello   there'
seed cmd2 'whoelsesince 30'

echo "building fuzzer..."
swiftc -sanitize=fuzzer,address -parse-as-library -O -g \
    -module-name ParleyProtocolFuzz \
    "$root"/Sources/ParleyProtocol/*.swift "$root/Fuzz/ParleyProtocol/FuzzProtocol.swift" \
    -o "$out/fuzz-protocol"

echo "fuzzing the protocol for ${seconds}s..."
"$out/fuzz-protocol" -max_total_time="$seconds" -max_len=4096 -timeout=10 \
    -artifact_prefix="$out/artifacts/" -print_final_stats=1 "$out/corpus"
