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
#endif
