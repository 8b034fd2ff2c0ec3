#include "weir_http.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static void global_init(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

/// Registry answers are small; larger ones are cut off (the parse then fails, naming it).
#define WEIR_HTTP_MAX_BODY (16u << 20)

typedef struct {
    weir_http_response *response;
    size_t limit;
} body_sink;

static size_t append_body(char *data, size_t size, size_t count, void *context) {
    body_sink *sink = context;
    weir_http_response *response = sink->response;
    size_t length = size * count;
    if (length > sink->limit || response->body_length > sink->limit - length) return 0;
    char *grown = realloc(response->body, response->body_length + length + 1);
    if (!grown) return 0;
    memcpy(grown + response->body_length, data, length);
    response->body = grown;
    response->body_length += length;
    response->body[response->body_length] = 0;
    return length;
}

int weir_http_perform(const weir_http_request *request, weir_http_response *response) {
    pthread_once(&global_once, global_init);
    memset(response, 0, sizeof *response);
    CURL *curl = curl_easy_init();
    if (!curl) {
        response->transport_error = CURLE_FAILED_INIT;
        strncpy(response->error, "libcurl could not start a request", sizeof response->error - 1);
        return response->transport_error;
    }
    struct curl_slist *headers = NULL;
    if (request->headers) {
        for (size_t i = 0; i < request->header_count; i++) headers = curl_slist_append(headers, request->headers[i]);
        // No "Expect: 100-continue" round trip before a PUT's body.
        headers = curl_slist_append(headers, "Expect:");
    } else {
        headers = curl_slist_append(headers, "Accept: application/vnd.schemaregistry.v1+json, application/json");
        if (strcmp(request->method, "POST") == 0)
            headers = curl_slist_append(headers, "Content-Type: application/vnd.schemaregistry.v1+json");
    }
    if (strcmp(request->method, "POST") == 0 || strcmp(request->method, "PUT") == 0) {
        if (strcmp(request->method, "PUT") == 0) curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, "PUT");
        else curl_easy_setopt(curl, CURLOPT_POST, 1L);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, request->body ? request->body : "");
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)request->body_length);
    } else if (strcmp(request->method, "HEAD") == 0) {
        curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
    }
    body_sink sink = { response, request->max_body_bytes ? request->max_body_bytes : WEIR_HTTP_MAX_BODY };
    curl_easy_setopt(curl, CURLOPT_URL, request->url);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, request->connect_timeout_ms);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, request->timeout_ms);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, append_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &sink);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, response->error);
    if (request->user_password) {
        curl_easy_setopt(curl, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(curl, CURLOPT_USERPWD, request->user_password);
    }
    if (request->ca_file) curl_easy_setopt(curl, CURLOPT_CAINFO, request->ca_file);
    if (request->cert_file) curl_easy_setopt(curl, CURLOPT_SSLCERT, request->cert_file);
    if (request->key_file) curl_easy_setopt(curl, CURLOPT_SSLKEY, request->key_file);
    CURLcode code = curl_easy_perform(curl);
    if (code == CURLE_OK) {
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &response->status);
    } else {
        response->transport_error = (int)code;
        if (response->error[0] == 0) strncpy(response->error, curl_easy_strerror(code), sizeof response->error - 1);
    }
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
    return response->transport_error;
}

void weir_http_response_free(weir_http_response *response) {
    free(response->body);
    response->body = NULL;
    response->body_length = 0;
}
