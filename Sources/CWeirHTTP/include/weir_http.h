// One blocking HTTP request through libcurl, for the Schema Registry client and the bundle stores
// (S3, HTTPS). A plain C function because curl_easy_setopt is variadic, which Swift cannot call.
#ifndef WEIR_HTTP_H
#define WEIR_HTTP_H

#include <stddef.h>

typedef struct {
    const char *url;
    /// "GET", "POST", "PUT" or "HEAD".
    const char *method;
    const char *body;
    size_t body_length;
    /// "user:password" for basic authentication, or NULL.
    const char *user_password;
    /// PEM files, or NULL: the CA bundle to trust, the client certificate and its key.
    const char *ca_file;
    const char *cert_file;
    const char *key_file;
    long connect_timeout_ms;
    long timeout_ms;
    /// Request headers ("Name: value"), replacing the registry's Accept/Content-Type when given.
    const char *const *headers;
    size_t header_count;
    /// A longer body is refused (transport error CURLE_WRITE_ERROR); 0: 16 MiB.
    size_t max_body_bytes;
} weir_http_request;

typedef struct {
    /// The HTTP status, or 0 when no answer came.
    long status;
    /// The body, NUL-terminated (free with weir_http_response_free).
    char *body;
    size_t body_length;
    /// libcurl's result code (0: a response arrived) and its message.
    int transport_error;
    char error[256];
} weir_http_response;

/// Performs the request; returns 0 when a response arrived (any status), else libcurl's code.
int weir_http_perform(const weir_http_request *request, weir_http_response *response);

void weir_http_response_free(weir_http_response *response);

#endif
