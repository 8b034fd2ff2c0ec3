#!/usr/bin/env python3
"""The Python worker a team would write: Weir's benchmark peer (make bench).

confluent-kafka consumer in batches of 500, json.loads per event, a numpy feature matrix,
onnxruntime on an int8 (quantize_dynamic) model, json.dumps per prediction with the input headers
copied, produce, flush, then a synchronous commit of the batch's offsets.

usage: python_worker.py BOOTSTRAP INPUT OUTPUT DLQ GROUP EVENTS MODEL_ONNX MANIFEST_JSON
Prints one JSON line like the other contenders: events answered, wall and CPU seconds from the
first consumed event until every event is answered.
"""
import json
import resource
import sys
import time

import numpy as np
import onnxruntime as ort
from confluent_kafka import Consumer, Producer, TopicPartition


def main():
    bootstrap, input_topic, output_topic, dlq_topic, group, events, model_path, manifest_path = sys.argv[1:9]
    events = int(events)
    manifest = json.load(open(manifest_path))
    features = [item["name"] for item in manifest["inputs"]]
    labels = manifest["outputs"]["labels"]
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    output_names = [o.name for o in session.get_outputs()]
    scores_index = output_names.index(manifest["outputs"]["scores"])

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                         "enable.auto.commit": False, "partition.assignment.strategy": "cooperative-sticky",
                         "fetch.wait.max.ms": 5})
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all", "linger.ms": 5})
    consumer.subscribe([input_topic])
    answered = failed = 0
    start_wall = start_cpu = None

    def on_delivery(err, _msg):
        nonlocal answered, failed
        if err is None:
            answered += 1
        else:
            failed += 1

    while answered + failed < events:
        batch = consumer.consume(num_messages=500, timeout=0.1)
        if not batch:
            continue
        if start_wall is None:
            start_wall, start_cpu = time.perf_counter(), time.process_time()
        rows, good = [], []
        offsets = {}
        for message in batch:
            if message.error():
                continue
            offsets[(message.topic(), message.partition())] = message.offset() + 1
            if message.value() is None:
                answered += 1
                continue
            try:
                event = json.loads(message.value())
                rows.append([float(event[name]) for name in features])
                good.append((message, event.get("id")))
            except (ValueError, KeyError, TypeError) as error:
                producer.produce(dlq_topic, key=message.key(), value=message.value(),
                                 headers=(message.headers() or []) + [("weir-error", type(error).__name__)],
                                 on_delivery=on_delivery)
        if rows:
            scores = session.run(None, {input_name: np.asarray(rows, dtype=np.float32)})[scores_index]
            for (message, event_id), row in zip(good, scores):
                best = int(np.argmax(row))
                value = json.dumps({"id": event_id, "model": manifest["name"], "version": manifest["version"],
                                    "label": labels[best], "scores": [float(s) for s in row],
                                    "source": {"topic": message.topic(), "partition": message.partition(),
                                               "offset": message.offset()}})
                producer.produce(output_topic, key=message.key(), value=value,
                                 headers=(message.headers() or []) + [("weir-model", manifest["name"])],
                                 on_delivery=on_delivery)
                producer.poll(0)
        producer.flush()
        consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()], asynchronous=False)
    wall = time.perf_counter() - start_wall
    cpu = time.process_time() - start_cpu
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"contender": "python", "events": answered, "failed": failed, "wall_s": wall, "cpu_s": cpu,
                      "context_switches": usage.ru_nvcsw + usage.ru_nivcsw}), flush=True)
    consumer.close()


if __name__ == "__main__":
    main()
