// Cyrus SASL (libsasl2-dev) for XMPPSASL, the only module that imports it.
#ifndef CCYRUSSASL_SHIM_H
#define CCYRUSSASL_SHIM_H
#include <stddef.h>   // older Cyrus headers used size_t without including it
#include <sasl/sasl.h>
#include <sasl/saslutil.h>
#endif
