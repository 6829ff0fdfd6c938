#if defined(__linux__)
#define _GNU_SOURCE  // struct ucred
#include <sys/socket.h>
#endif
#include "CParleyShims.h"
#include <openssl/crypto.h>

int parley_SSL_CTX_set_min_proto_version(SSL_CTX *ctx, int version) { return (int)SSL_CTX_set_min_proto_version(ctx, version); }
int parley_SSL_CTX_set_max_proto_version(SSL_CTX *ctx, int version) { return (int)SSL_CTX_set_max_proto_version(ctx, version); }
long parley_SSL_CTX_set_mode(SSL_CTX *ctx, long mode) { return SSL_CTX_set_mode(ctx, mode); }
long parley_SSL_CTX_set_session_cache_mode(SSL_CTX *ctx, long mode) { return SSL_CTX_set_session_cache_mode(ctx, mode); }
int parley_SSL_CTX_set1_groups_list(SSL_CTX *ctx, const char *list) { return (int)SSL_CTX_set1_groups_list(ctx, list); }

int parley_SSL_set_tlsext_host_name(SSL *ssl, const char *name) { return (int)SSL_set_tlsext_host_name(ssl, name); }
int parley_SSL_set_app_data(SSL *ssl, void *data) { return SSL_set_app_data(ssl, data); }
void *parley_SSL_get_app_data(const SSL *ssl) { return SSL_get_app_data(ssl); }

uint64_t parley_SSL_OP_NO_COMPRESSION(void) { return SSL_OP_NO_COMPRESSION; }
uint64_t parley_SSL_OP_NO_RENEGOTIATION(void) { return SSL_OP_NO_RENEGOTIATION; }
uint64_t parley_SSL_OP_NO_TICKET(void) { return SSL_OP_NO_TICKET; }
uint64_t parley_SSL_OP_CIPHER_SERVER_PREFERENCE(void) { return SSL_OP_CIPHER_SERVER_PREFERENCE; }
long parley_SSL_MODE_RELEASE_BUFFERS(void) { return SSL_MODE_RELEASE_BUFFERS; }
long parley_SSL_SESS_CACHE_OFF(void) { return SSL_SESS_CACHE_OFF; }

long parley_BIO_get_mem_data(BIO *bio, char **data) { return BIO_get_mem_data(bio, data); }

void parley_OPENSSL_free(void *ptr) { OPENSSL_free(ptr); }

EVP_PKEY *parley_generate_p256_key(void) { return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"); }

void parley_SSL_CTX_set_verify(SSL_CTX *ctx, int mode, parley_verify_fn fn) { SSL_CTX_set_verify(ctx, mode, fn); }
SSL *parley_X509_STORE_CTX_get_ssl(X509_STORE_CTX *store) {
    return X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
}

#ifdef __GLIBC__
#include <malloc.h>
int parley_malloc_trim(size_t pad) { return malloc_trim(pad); }
#else
int parley_malloc_trim(size_t pad) { (void)pad; return 0; }
#endif

#if defined(__linux__)
_Static_assert(sizeof(parley_ucred) == sizeof(struct ucred), "parley_ucred must match struct ucred");
int parley_SO_PEERCRED(void) { return SO_PEERCRED; }
#else
int parley_SO_PEERCRED(void) { return -1; }
#endif
