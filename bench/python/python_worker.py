#!/usr/bin/env python3
"""The Python worker a Python expert would write: Weir's benchmark peer (make bench).

confluent-kafka consumer in batches of up to 1,000, orjson to parse, one numpy feature matrix
and one onnxruntime call (int8, quantize_dynamic) per batch, orjson to write each prediction
(the record Weir writes, with the input headers and weir-model/-version/-route), produced with
Weir's producer settings (idempotent, acks=all, linger.ms=5), librdkafka's queue served once per
batch; no flush per batch: once a second it flushes and commits what it consumed, so offsets are
committed only after their answers are delivered, as Weir does (commit-interval-ms 1000).

usage: python_worker.py BOOTSTRAP INPUT OUTPUT DLQ GROUP EVENTS MODEL_ONNX MANIFEST_JSON
Prints one JSON line like the other contenders: events answered, wall and CPU seconds from the
first consumed event until every event is answered and committed.
"""
import json
import os
import resource
import sys
import time
from operator import itemgetter

import numpy as np
import onnxruntime as ort
import orjson
from confluent_kafka import Consumer, Producer, TopicPartition


def kafka_thread_cpu_s():
    """CPU seconds so far of this process's librdkafka threads (named rdk:*), from schedstat."""
    total = 0.0
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/comm") as comm:
                if not comm.read().startswith("rdk:"):
                    continue
            with open(f"/proc/self/task/{task}/schedstat") as stat:
                total += int(stat.read().split()[0]) / 1e9
        except OSError:
            continue
    return total


def main():
    bootstrap, input_topic, output_topic, dlq_topic, group, events, model_path, manifest_path = sys.argv[1:9]
    events = int(events)
    manifest = json.load(open(manifest_path))
    features = [item["name"] for item in manifest["inputs"]]
    read_features = itemgetter(*features)
    labels = manifest["outputs"]["labels"]
    name, version = manifest["name"], manifest["version"]
    own_headers = [("weir-model", name.encode()), ("weir-version", version.encode()), ("weir-route", b"primary")]
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    output_names = [o.name for o in session.get_outputs()]
    scores_name = manifest["outputs"]["scores"]

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                         "enable.auto.commit": False, "partition.assignment.strategy": "cooperative-sticky",
                         "fetch.wait.max.ms": 5})
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all", "linger.ms": 5})
    consumer.subscribe([input_topic])
    answered = failed = 0
    start_wall = start_cpu = start_kafka_cpu = None
    consumed = {}
    next_commit = 0.0

    def on_delivery(err, _msg):
        nonlocal answered, failed
        if err is None:
            answered += 1
        else:
            failed += 1

    def flush_and_commit():
        producer.flush()
        if consumed:
            consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in consumed.items()], asynchronous=False)
            consumed.clear()

    while answered + failed < events:
        batch = consumer.consume(num_messages=1000, timeout=0.05)
        now = time.perf_counter()
        if batch and start_wall is None:
            start_wall, start_cpu, start_kafka_cpu = now, time.process_time(), kafka_thread_cpu_s()
        rows, good = [], []
        for message in batch:
            if message.error():
                continue
            consumed[(message.topic(), message.partition())] = message.offset() + 1
            value = message.value()
            if value is None:
                answered += 1
                continue
            try:
                event = orjson.loads(value)
                rows.append(read_features(event))
                good.append((message, event.get("id")))
            except (ValueError, KeyError, TypeError) as error:
                producer.produce(dlq_topic, key=message.key(), value=value,
                                 headers=(message.headers() or []) + [("weir-error", type(error).__name__)],
                                 on_delivery=on_delivery)
        if rows:
            scores = session.run([scores_name], {input_name: np.asarray(rows, dtype=np.float32)})[0]
            best = scores.argmax(axis=1)
            for (message, event_id), row, top in zip(good, scores.tolist(), best.tolist()):
                value = orjson.dumps({"id": event_id, "model": name, "version": version, "label": labels[top], "scores": row,
                                      "source": {"topic": message.topic(), "partition": message.partition(),
                                                 "offset": message.offset()}})
                producer.produce(output_topic, key=message.key(), value=value,
                                 headers=(message.headers() or []) + own_headers, on_delivery=on_delivery)
        producer.poll(0)
        if now >= next_commit or answered + failed + len(producer) >= events:
            flush_and_commit()
            next_commit = now + 1.0
    flush_and_commit()
    wall = time.perf_counter() - start_wall
    cpu = time.process_time() - start_cpu
    kafka_cpu = kafka_thread_cpu_s() - start_kafka_cpu
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"contender": "python", "events": answered, "failed": failed, "wall_s": wall, "cpu_s": cpu,
                      "kafka_cpu_s": kafka_cpu, "context_switches": usage.ru_nvcsw + usage.ru_nivcsw}), flush=True)
    consumer.close()


if __name__ == "__main__":
    main()
