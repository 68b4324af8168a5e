// OpenSSL 3 (libssl-dev) for XMPPTLS, the only module that imports it.
// Function-like macros are invisible to the Swift importer: each one the
// project needs gets a `cxmpp_`-prefixed static inline wrapper here.
#ifndef COPENSSL_SHIM_H
#define COPENSSL_SHIM_H
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <openssl/evp.h>
#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/ec.h>
#include <stdint.h>

// SSL_set_tlsext_host_name is a SSL_ctrl macro (tls1.h).
static inline long cxmpp_SSL_set_tlsext_host_name(SSL *ssl, const char *name) {
    return SSL_set_tlsext_host_name(ssl, name);
}

// Protocol version bounds are SSL_CTX_ctrl macros (ssl.h).
static inline long cxmpp_SSL_CTX_set_min_proto_version(SSL_CTX *ctx, int version) {
    return SSL_CTX_set_min_proto_version(ctx, version);
}

static inline long cxmpp_SSL_CTX_set_max_proto_version(SSL_CTX *ctx, int version) {
    return SSL_CTX_set_max_proto_version(ctx, version);
}

// SSL_CTX_set_mode is a SSL_CTX_ctrl macro.
static inline long cxmpp_SSL_CTX_set_mode(SSL_CTX *ctx, long mode) {
    return SSL_CTX_set_mode(ctx, mode);
}

// SSL_OP_* constants are built with SSL_OP_BIT(), which the importer skips.
static inline uint64_t cxmpp_SSL_OP_NO_RENEGOTIATION(void) { return SSL_OP_NO_RENEGOTIATION; }
static inline uint64_t cxmpp_SSL_OP_NO_COMPRESSION(void) { return SSL_OP_NO_COMPRESSION; }
static inline uint64_t cxmpp_SSL_OP_NO_TICKET(void) { return SSL_OP_NO_TICKET; }

// SSL_CTX_set_session_cache_mode is a SSL_CTX_ctrl macro.
static inline long cxmpp_SSL_CTX_set_session_cache_mode(SSL_CTX *ctx, long mode) {
    return SSL_CTX_set_session_cache_mode(ctx, mode);
}

// EVP_RSA_gen and EVP_EC_gen are macros over the variadic EVP_PKEY_Q_keygen (evp.h).
static inline EVP_PKEY *cxmpp_EVP_RSA_gen(unsigned int bits) {
    return EVP_RSA_gen(bits);
}

static inline EVP_PKEY *cxmpp_EVP_EC_gen(const char *curve) {
    return EVP_EC_gen(curve);
}

#endif
