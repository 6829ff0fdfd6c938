// One wrapper per OpenSSL macro, variadic function or callback that Swift cannot call
// directly. Each is named after the call it wraps, prefixed `parley_`. No policy lives here:
// every decision (versions, suites, verification) is made by the Swift caller.
#ifndef PARLEY_SHIMS_H
#define PARLEY_SHIMS_H

#include <openssl/ssl.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stddef.h>
#include <stdint.h>

// SSL_CTX macros
int parley_SSL_CTX_set_min_proto_version(SSL_CTX *ctx, int version);
int parley_SSL_CTX_set_max_proto_version(SSL_CTX *ctx, int version);
long parley_SSL_CTX_set_mode(SSL_CTX *ctx, long mode);
long parley_SSL_CTX_set_session_cache_mode(SSL_CTX *ctx, long mode);
int parley_SSL_CTX_set1_groups_list(SSL_CTX *ctx, const char *list);

// SSL macros
int parley_SSL_set_tlsext_host_name(SSL *ssl, const char *name);
int parley_SSL_set_app_data(SSL *ssl, void *data);
void *parley_SSL_get_app_data(const SSL *ssl);

// Option and mode constants built from macros Swift does not import.
uint64_t parley_SSL_OP_NO_COMPRESSION(void);
uint64_t parley_SSL_OP_NO_RENEGOTIATION(void);
uint64_t parley_SSL_OP_NO_TICKET(void);
uint64_t parley_SSL_OP_CIPHER_SERVER_PREFERENCE(void);
long parley_SSL_MODE_RELEASE_BUFFERS(void);
long parley_SSL_SESS_CACHE_OFF(void);

// BIO macros
long parley_BIO_get_mem_data(BIO *bio, char **data);

// Memory
void parley_OPENSSL_free(void *ptr);
// glibc's malloc_trim(pad) from <malloc.h>, which Swift's Glibc module does not export; returns 0
// where there is no glibc.
int parley_malloc_trim(size_t pad);

// Linux's SO_PEERCRED and its struct ucred, which glibc declares only under _GNU_SOURCE (Swift's
// Glibc module is built without it). Same layout as struct ucred (checked in shims.c); elsewhere
// parley_SO_PEERCRED() returns -1.
typedef struct { int32_t pid; uint32_t uid; uint32_t gid; } parley_ucred;
int parley_SO_PEERCRED(void);

// Variadic: EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256").
EVP_PKEY *parley_generate_p256_key(void);

// Certificate verification callback trampoline. The Swift side registers one C-convention
// function; the shim only forwards (preverify, store) so that the Swift pinning policy runs.
typedef int (*parley_verify_fn)(int preverify_ok, X509_STORE_CTX *store);
void parley_SSL_CTX_set_verify(SSL_CTX *ctx, int mode, parley_verify_fn fn);
SSL *parley_X509_STORE_CTX_get_ssl(X509_STORE_CTX *store);

#endif
