#ifndef WEIR_COPENSSL_SHIM_H
#define WEIR_COPENSSL_SHIM_H
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#endif
