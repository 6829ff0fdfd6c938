// The memory floor OpenSSL sets for any server on this machine: heap held by one server-side SSL
// after a TLS 1.3 handshake, configured with Parley's policy (TLS 1.3 only, the same suites and
// groups, no tickets, no session cache, SSL_MODE_RELEASE_BUFFERS) and with no I/O buffer of its
// own (a null BIO stands in for Parley's ByteBufferBIO, which holds nothing while idle).
//
// Handshakes run in-process over memory BIOs; live heap is glibc's mallinfo2 (allocated chunks,
// headers included), measured before and after N connections are left idle.
//
//   cc -O2 -o openssl-floor scripts/openssl-floor.c -lssl -lcrypto
//   openssl-floor CERT_DIR [N]        # CERT_DIR holds server.pem and server.key (gen-certs.sh)
//
// Prints one human line and one `RESULT {json}` line (scripts/bench.sh reads the latter).
#include <malloc.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>

static size_t live_heap(void) {
    struct mallinfo2 m = mallinfo2();
    return m.uordblks + m.hblkhd;
}

static void die(const char *what) {
    fprintf(stderr, "openssl-floor: %s\n", what);
    ERR_print_errors_fp(stderr);
    exit(1);
}

// Moves everything one side wrote to the other side's input.
static void relay(BIO *from, BIO *to) {
    char buf[16384];
    int n;
    while ((n = BIO_read(from, buf, sizeof buf)) > 0) BIO_write(to, buf, n);
}

static SSL_CTX *server_context(const char *dir) {
    char path[4096];
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) die("SSL_CTX_new");
    SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
    if (!SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"))
        die("ciphersuites");
    if (!SSL_CTX_set1_groups_list(ctx, "X25519:P-256")) die("groups");
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_TICKET |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_num_tickets(ctx, 0);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_max_early_data(ctx, 0);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    snprintf(path, sizeof path, "%s/server.pem", dir);
    if (SSL_CTX_use_certificate_chain_file(ctx, path) != 1) die("server.pem");
    snprintf(path, sizeof path, "%s/server.key", dir);
    if (SSL_CTX_use_PrivateKey_file(ctx, path, SSL_FILETYPE_PEM) != 1) die("server.key");
    return ctx;
}

// One handshake plus one small record each way; returns the server side, left idle.
static SSL *idle_server_connection(SSL_CTX *sctx, SSL_CTX *cctx) {
    SSL *s = SSL_new(sctx), *c = SSL_new(cctx);
    BIO *s_in = BIO_new(BIO_s_mem()), *s_out = BIO_new(BIO_s_mem());
    BIO *c_in = BIO_new(BIO_s_mem()), *c_out = BIO_new(BIO_s_mem());
    if (!s || !c || !s_in || !s_out || !c_in || !c_out) die("allocation");
    SSL_set_bio(s, s_in, s_out);
    SSL_set_bio(c, c_in, c_out);
    SSL_set_accept_state(s);
    SSL_set_connect_state(c);
    int done = 0;
    for (int i = 0; i < 50 && !done; i++) {
        int rc = SSL_do_handshake(c);
        relay(c_out, s_in);
        int rs = SSL_do_handshake(s);
        relay(s_out, c_in);
        done = rc == 1 && rs == 1;
    }
    if (!done) die("handshake did not complete");
    char buf[64];
    if (SSL_write(c, "login", 5) != 5) die("client write");
    relay(c_out, s_in);
    if (SSL_read(s, buf, sizeof buf) != 5) die("server read");
    if (SSL_write(s, "ok", 2) != 2) die("server write");
    relay(s_out, c_in);
    if (SSL_read(c, buf, sizeof buf) != 2) die("client read");
    SSL_free(c);
    BIO *idle = BIO_new(BIO_s_null());
    SSL_set_bio(s, idle, idle);  // frees the memory BIOs
    return s;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: openssl-floor CERT_DIR [N]\n");
        return 64;
    }
    int n = argc > 2 ? atoi(argv[2]) : 2000;
    if (n < 1) n = 1;
    SSL_CTX *sctx = server_context(argv[1]);
    SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
    if (!cctx) die("SSL_CTX_new");
    SSL_CTX_set_min_proto_version(cctx, TLS1_3_VERSION);
    SSL_CTX_set_verify(cctx, SSL_VERIFY_NONE, NULL);  // only the server side is measured
    SSL **kept = calloc((size_t)n, sizeof *kept);
    SSL_free(idle_server_connection(sctx, cctx));  // first-use allocations (provider caches) not counted
    malloc_trim(0);
    size_t before = live_heap();
    for (int i = 0; i < n; i++) kept[i] = idle_server_connection(sctx, cctx);
    malloc_trim(0);
    double per_conn = (double)(live_heap() - before) / n / 1024;
    before = live_heap();
    SSL *fresh = SSL_new(sctx);
    double ssl_new = (double)(live_heap() - before) / 1024;
    printf("openssl-floor: %s, %d idle server connections: %.2f KiB of heap each after a TLS 1.3 handshake "
           "(SSL_new alone %.2f KiB)\n",
           OpenSSL_version(OPENSSL_VERSION), n, per_conn, ssl_new);
    printf("RESULT {\"proto\":\"openssl-floor\",\"connections\":%d,\"kib_per_conn\":%.2f,\"ssl_new_kib\":%.2f}\n", n,
           per_conn, ssl_new);
    SSL_free(fresh);
    for (int i = 0; i < n; i++) SSL_free(kept[i]);
    free(kept);
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
    return 0;
}
