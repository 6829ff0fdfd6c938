#!/usr/bin/env bash
# Fuzz every parser of untrusted input with libFuzzer + AddressSanitizer: ParleyProtocol (requests,
# server messages, private frames with the safety-code exchange), the client's command parser
# (ParleyCommands) and the cluster's notification payloads from other nodes (ParleyCluster).
# TLS records are OpenSSL's to parse (fuzzed by its own project).
# Usage: scripts/fuzz.sh [SECONDS]   (default 30, per target). Exits non-zero if libFuzzer finds a crash.
# The targets are the package's fuzz-* executables; none of these modules depends on NIO, so the
# instrumented build (its own scratch path, .build-fuzz) compiles only them.
set -euo pipefail
seconds="${1:-30}"
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$root/fuzz-out"
mkdir -p "$out/corpus" "$out/commands" "$out/artifacts"

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
# Private (peer-to-peer) frames, including the safety-code exchange.
seed popen '{"type":"open","session":"0123456789abcdef0123456789abcdef"}'
seed pcommit '{"type":"commit","commitment":"873a30fe9eb8f2bf014e53b10ad941e184f59e29b32b792c9230bf3903019ca9"}'
seed pnonce '{"type":"nonce","nonce":"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"}'
seed preveal '{"type":"reveal","nonce":"1111111111111111111111111111111111111111111111111111111111111111"}'
seed pbye '{"type":"bye","reason":"safety-code commitment did not match (someone may be interfering)"}'
# Cluster notifications (another node's payloads, read from PostgreSQL).
mkdir -p "$out/cluster"
node=0123456789abcdef0123456789abcdef
cseed() { printf '%s' "$2" > "$out/cluster/$1"; }
cseed on '{"o":"'$node'","t":"on","u":"alice","d":"Alice","b":["bob"]}'
cseed bc '{"o":"'$node'","t":"bc","u":"alice","d":"Alice","x":"hi \u00e9","s":[]}'
cseed dm '{"o":"'$node'","t":"dm","i":7,"u":"bob","d":"Alice","x":"yo","at":1700000000000}'
cseed blk '{"o":"'$node'","t":"blk","u":"alice","v":"bob","a":true}'
cseed pacc '{"o":"'$node'","t":"pacc","u":"alice","f":"bob","d":"Bob","h":"127.0.0.2","p":4242,"fp":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef","l":"0123456789abcdef0123456789abcdef"}'
cseed pref '{"o":"'$node'","t":"pref","u":"alice","f":"bob","d":"Bob","k":3,"c":"too_many_requests","r":"Error. Bob has too many"}'
cseed gone '{"o":"'$node'","t":"gone","n":"fedcba9876543210fedcba9876543210"}'
cseed ref '{"o":"'$node'","t":"ref","i":12}'
printf '%s' 'message bob hello   there' > "$out/commands/message"
printf '%s' 'whoelsesince 30' > "$out/commands/whoelsesince"
printf '%s' 'privat bob hi' > "$out/commands/typo"

cd "$root"
for target in fuzz-protocol fuzz-commands fuzz-cluster; do
    echo "building $target..."
    # Optimized (several times the executions per second of a debug build, for the same build time),
    # with debug info so AddressSanitizer's reports name lines.
    swift build -c release --scratch-path "$root/.build-fuzz" -Xswiftc -sanitize=fuzzer,address -Xswiftc -g \
        -Xswiftc -DFUZZING --product "$target"
done
bin="$root/.build-fuzz/release"

fuzz() {  # TARGET CORPUS
    echo "fuzzing $1 for ${seconds}s..."
    "$bin/$1" -max_total_time="$seconds" -max_len=4096 -timeout=10 \
        -artifact_prefix="$out/artifacts/$1-" -print_final_stats=1 "$2"
}
fuzz fuzz-protocol "$out/corpus"
fuzz fuzz-commands "$out/commands"
fuzz fuzz-cluster "$out/cluster"
