/*
 * The C floor for Weir's benchmarks: a consume -> produce passthrough written directly
 * against librdkafka, the way a careful C programmer would: batch consume, produceva with
 * copied key/value/headers to the same partition of the output topic, idempotent producer,
 * delivery reports through dr_msg_cb, and offsets committed only after delivery (async every
 * 100 ms, sync at the end). Prints one JSON line: events, wall_s, cpu_s (from the first
 * message to the final commit).
 *
 * Two ways to wait for work:
 *   event     the flow Weir uses: consume what is ready (timeout 0); when nothing is, sleep on a
 *             condition variable raised by librdkafka's queue event callback (consumer queue and
 *             producer delivery-report queue). Latency: an event is handled as soon as it arrives.
 *   blocking  the classic loop: rd_kafka_consume_batch_queue(10 ms), which waits until the batch is
 *             full or 10 ms have passed. Bigger batches, up to 10 ms added latency per event.
 *
 * usage: c-passthrough BOOTSTRAP INPUT OUTPUT GROUP EVENTS [event|blocking]
 */
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>
#include <pthread.h>
#include <dirent.h>

#define MAX_PARTITIONS 1024
#define BATCH 1000

static int64_t next_offset[MAX_PARTITIONS];   /* next input offset to commit, per partition */
static int dirty[MAX_PARTITIONS];
static long delivered = 0;
static long failed = 0;

/* The wake-up raised by librdkafka's queue event callback. */
static pthread_mutex_t wake_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake_cond;
static int wake_pending = 0;

static void on_queue_event(rd_kafka_t *rk, void *opaque) {
    (void)rk; (void)opaque;
    pthread_mutex_lock(&wake_lock);
    wake_pending = 1;
    pthread_cond_signal(&wake_cond);
    pthread_mutex_unlock(&wake_lock);
}

static void wait_for_event(int timeout_ms) {
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_nsec += (long)timeout_ms * 1000000L;
    deadline.tv_sec += deadline.tv_nsec / 1000000000L;
    deadline.tv_nsec %= 1000000000L;
    pthread_mutex_lock(&wake_lock);
    while (!wake_pending)
        if (pthread_cond_timedwait(&wake_cond, &wake_lock, &deadline) != 0) break;
    wake_pending = 0;
    pthread_mutex_unlock(&wake_lock);
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static long context_switches(void) {
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return u.ru_nvcsw + u.ru_nivcsw;
}

static double cpu_s(void) {
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return u.ru_utime.tv_sec + u.ru_utime.tv_usec / 1e6 + u.ru_stime.tv_sec + u.ru_stime.tv_usec / 1e6;
}

/* CPU seconds so far of this process's librdkafka threads (named rdk:*), from each thread's
 * schedstat (nanoseconds on a CPU): the floor's split between its own thread and librdkafka's. */
static double kafka_thread_cpu_s(void) {
    DIR *tasks = opendir("/proc/self/task");
    if (!tasks) return 0;
    double total = 0;
    struct dirent *entry;
    while ((entry = readdir(tasks))) {
        if (entry->d_name[0] == '.') continue;
        char path[96], name[32] = {0};
        snprintf(path, sizeof path, "/proc/self/task/%.20s/comm", entry->d_name);
        FILE *comm = fopen(path, "r");
        if (!comm) continue;
        int named = fgets(name, sizeof name, comm) != NULL;
        fclose(comm);
        if (!named || strncmp(name, "rdk:", 4) != 0) continue;
        snprintf(path, sizeof path, "/proc/self/task/%.20s/schedstat", entry->d_name);
        FILE *stat = fopen(path, "r");
        if (!stat) continue;
        unsigned long long ns = 0;
        if (fscanf(stat, "%llu", &ns) == 1) total += ns / 1e9;
        fclose(stat);
    }
    closedir(tasks);
    return total;
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk; (void)opaque;
    if (m->err) { failed++; return; }
    /* The output partition equals the input partition; the opaque is the input offset. */
    next_offset[m->partition] = (int64_t)(intptr_t)m->_private + 1;
    dirty[m->partition] = 1;
    delivered++;
}

static void set(rd_kafka_conf_t *conf, const char *name, const char *value) {
    char err[512];
    if (rd_kafka_conf_set(conf, name, value, err, sizeof err) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "c-passthrough: %s: %s\n", name, err);
        exit(2);
    }
}

static void commit(rd_kafka_t *consumer, const char *topic, int async) {
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(32);
    for (int p = 0; p < MAX_PARTITIONS; p++) {
        if (!dirty[p]) continue;
        rd_kafka_topic_partition_list_add(list, topic, p)->offset = next_offset[p];
        dirty[p] = 0;
    }
    if (list->cnt > 0) {
        rd_kafka_resp_err_t err = rd_kafka_commit(consumer, list, async);
        if (err && !async) fprintf(stderr, "c-passthrough: commit: %s\n", rd_kafka_err2str(err));
    }
    rd_kafka_topic_partition_list_destroy(list);
}

int main(int argc, char **argv) {
    if (argc != 6 && argc != 7) {
        fprintf(stderr, "usage: c-passthrough BOOTSTRAP INPUT OUTPUT GROUP EVENTS [event|blocking]\n");
        return 2;
    }
    int event_mode = argc == 6 || strcmp(argv[6], "blocking") != 0;
    pthread_condattr_t cond_attributes;
    pthread_condattr_init(&cond_attributes);
    pthread_condattr_setclock(&cond_attributes, CLOCK_MONOTONIC);
    pthread_cond_init(&wake_cond, &cond_attributes);
    const char *bootstrap = argv[1], *input = argv[2], *output = argv[3], *group = argv[4];
    long events = atol(argv[5]);
    char err[512];

    rd_kafka_conf_t *cconf = rd_kafka_conf_new();
    set(cconf, "bootstrap.servers", bootstrap);
    set(cconf, "group.id", group);
    set(cconf, "partition.assignment.strategy", "cooperative-sticky");
    set(cconf, "auto.offset.reset", "earliest");
    set(cconf, "enable.auto.commit", "false");
    set(cconf, "enable.auto.offset.store", "false");
    set(cconf, "log.connection.close", "false");
    rd_kafka_t *consumer = rd_kafka_new(RD_KAFKA_CONSUMER, cconf, err, sizeof err);
    if (!consumer) { fprintf(stderr, "c-passthrough: %s\n", err); return 2; }
    rd_kafka_poll_set_consumer(consumer);

    rd_kafka_conf_t *pconf = rd_kafka_conf_new();
    set(pconf, "bootstrap.servers", bootstrap);
    set(pconf, "enable.idempotence", "true");
    set(pconf, "acks", "all");
    set(pconf, "linger.ms", "5");
    set(pconf, "log.connection.close", "false");
    rd_kafka_conf_set_dr_msg_cb(pconf, on_delivery);
    rd_kafka_t *producer = rd_kafka_new(RD_KAFKA_PRODUCER, pconf, err, sizeof err);
    if (!producer) { fprintf(stderr, "c-passthrough: %s\n", err); return 2; }
    rd_kafka_topic_t *out = rd_kafka_topic_new(producer, output, NULL);

    rd_kafka_topic_partition_list_t *subscription = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(subscription, input, RD_KAFKA_PARTITION_UA);
    rd_kafka_subscribe(consumer, subscription);
    rd_kafka_topic_partition_list_destroy(subscription);

    rd_kafka_queue_t *queue = rd_kafka_queue_get_consumer(consumer);
    rd_kafka_queue_t *delivery_queue = rd_kafka_queue_get_main(producer);
    if (event_mode) {
        rd_kafka_queue_cb_event_enable(queue, on_queue_event, NULL);
        rd_kafka_queue_cb_event_enable(delivery_queue, on_queue_event, NULL);
    }
    rd_kafka_message_t *batch[BATCH];
    long consumed = 0;
    double start_wall = 0, start_cpu = 0, start_kafka_cpu = 0, last_commit = 0;
    long start_switches = 0;

    while (delivered + failed < events) {
        ssize_t n;
        if (event_mode) {
            n = rd_kafka_consume_batch_queue(queue, 0, batch, BATCH);
            if (n == 0) {
                wait_for_event(100);
                n = rd_kafka_consume_batch_queue(queue, 0, batch, BATCH);
            }
        } else {
            n = rd_kafka_consume_batch_queue(queue, 10, batch, BATCH);
        }
        for (ssize_t i = 0; i < n; i++) {
            rd_kafka_message_t *m = batch[i];
            if (m->err) { rd_kafka_message_destroy(m); continue; }
            if (consumed++ == 0) { start_wall = now_s(); start_cpu = cpu_s(); start_kafka_cpu = kafka_thread_cpu_s(); start_switches = context_switches(); last_commit = start_wall; }
            rd_kafka_headers_t *in_headers = NULL, *out_headers = NULL;
            if (rd_kafka_message_headers(m, &in_headers) == RD_KAFKA_RESP_ERR_NO_ERROR)
                out_headers = rd_kafka_headers_copy(in_headers);
            for (;;) {
                rd_kafka_vu_t vus[7];
                size_t c = 0;
                vus[c].vtype = RD_KAFKA_VTYPE_RKT; vus[c++].u.rkt = out;
                vus[c].vtype = RD_KAFKA_VTYPE_PARTITION; vus[c++].u.i32 = m->partition;
                vus[c].vtype = RD_KAFKA_VTYPE_MSGFLAGS; vus[c++].u.i = RD_KAFKA_MSG_F_COPY;
                vus[c].vtype = RD_KAFKA_VTYPE_KEY; vus[c].u.mem.ptr = m->key; vus[c++].u.mem.size = m->key_len;
                vus[c].vtype = RD_KAFKA_VTYPE_VALUE; vus[c].u.mem.ptr = m->payload; vus[c++].u.mem.size = m->len;
                if (out_headers) { vus[c].vtype = RD_KAFKA_VTYPE_HEADERS; vus[c++].u.headers = out_headers; }
                vus[c].vtype = RD_KAFKA_VTYPE_OPAQUE; vus[c++].u.ptr = (void *)(intptr_t)m->offset;
                rd_kafka_error_t *error = rd_kafka_produceva(producer, vus, c);
                if (!error) break;
                if (rd_kafka_error_code(error) == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                    rd_kafka_error_destroy(error);
                    rd_kafka_poll(producer, 100);
                    continue;
                }
                fprintf(stderr, "c-passthrough: produce: %s\n", rd_kafka_error_string(error));
                rd_kafka_error_destroy(error);
                return 1;
            }
            rd_kafka_message_destroy(m);
        }
        rd_kafka_poll(producer, 0);
        double t = now_s();
        if (consumed > 0 && t - last_commit >= 0.1) { commit(consumer, input, 1); last_commit = t; }
    }
    rd_kafka_flush(producer, 10000);
    commit(consumer, input, 0);
    double wall = now_s() - start_wall, cpu = cpu_s() - start_cpu, kafka_cpu = kafka_thread_cpu_s() - start_kafka_cpu;
    printf("{\"contender\":\"%s\",\"events\":%ld,\"failed\":%ld,\"wall_s\":%.6f,\"cpu_s\":%.6f,\"kafka_cpu_s\":%.6f,\"context_switches\":%ld}\n",
           event_mode ? "c-event" : "c-blocking", delivered, failed, wall, cpu, kafka_cpu, context_switches() - start_switches);
    fflush(stdout);

    if (event_mode) {
        rd_kafka_queue_cb_event_enable(queue, NULL, NULL);
        rd_kafka_queue_cb_event_enable(delivery_queue, NULL, NULL);
    }
    rd_kafka_queue_destroy(delivery_queue);
    rd_kafka_queue_destroy(queue);
    rd_kafka_consumer_close(consumer);
    rd_kafka_destroy(consumer);
    rd_kafka_topic_destroy(out);
    rd_kafka_destroy(producer);
    return failed ? 1 : 0;
}
