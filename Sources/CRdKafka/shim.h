#ifndef WEIR_CRDKAFKA_SHIM_H
#define WEIR_CRDKAFKA_SHIM_H
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

/* rd_kafka_mock_broker_push_request_error_rtts is variadic, which Swift cannot call: this pushes
 * one error (with no added delay) onto a broker's stack for ApiKey. */
static inline rd_kafka_resp_err_t weir_mock_broker_push_request_error(rd_kafka_mock_cluster_t *mcluster, int32_t broker_id,
                                                                      int16_t api_key, rd_kafka_resp_err_t err) {
    return rd_kafka_mock_broker_push_request_error_rtts(mcluster, broker_id, api_key, 1, err, 0);
}
#endif
