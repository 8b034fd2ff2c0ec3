#!/usr/bin/env python3
"""Writes the Avro fixtures (Tests/WeirCodecTests/Fixtures/avro-cases.json) with the real serializers.

Each case is one Confluent-framed value, written by confluent-kafka's AvroSerializer (through a
Schema Registry REST server this script runs, shaped like Confluent's) or by fastavro's
schemaless_writer behind a hand-made frame, with the writer schemas by id, the model's features,
and what Weir must read: the feature row (from the record itself, in Python) or the dead-letter
code. Regenerate: python3 scripts/make-avro-fixtures.py
"""
import decimal, io, json, math, os, struct, sys

import confluent_kafka, fastavro
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

OUT = os.path.join(os.path.dirname(__file__), "..", "Tests", "WeirCodecTests", "Fixtures", "avro-cases.json")

from fixture_registry import schemas
import fixture_registry

server, url = fixture_registry.start()
client = SchemaRegistryClient({"url": url})

cases = []


def serialize(schema, record, topic="events"):
    """The real AvroSerializer (auto-registers under <topic>-value); the framed bytes and their id."""
    serializer = AvroSerializer(client, json.dumps(schema), conf={"auto.register.schemas": True})
    data = serializer(record, SerializationContext(topic, MessageField.VALUE))
    return data, struct.unpack(">I", data[1:5])[0]


def fastavro_framed(schema, record, sid):
    """fastavro's schemaless writer behind a hand-made frame (for ids the registry need not hold)."""
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), record)
    return b"\x00" + struct.pack(">I", sid) + out.getvalue()


def expected_row(features, record, defaults, path=(), categorical=(), vocabulary=()):
    """What Weir reads, computed from the record: None marks a dead letter (code separately). A
    categorical feature reads its category's place in `vocabulary` (-1 when absent from it)."""
    holder = record
    for key in path:
        holder = holder.get(key) if isinstance(holder, dict) else None
    row, defaulted = [], []
    for index, name in enumerate(features):
        if isinstance(holder, list):
            value = holder[index] if index < len(holder) else None
        else:
            value = holder.get(name) if isinstance(holder, dict) else None
        if name in categorical and isinstance(value, str):
            value = fixture_registry.category_code(value, vocabulary)
        if isinstance(value, decimal.Decimal):
            value = float(value)
        if isinstance(value, bool):
            value = 1.0 if value else 0.0
        if value is None or (isinstance(value, float) and math.isnan(value)):
            assert defaults[index] is not None
            row.append(defaults[index]); defaulted.append(True)
        else:
            row.append(float(value)); defaulted.append(False)
    return row, defaulted


def case(name, data, features, *, defaults=None, path=(), record=None, code=None, id_=None, categorical=(), vocabulary=()):
    cases.append(fixture_registry.fixture_case(
        name, data, features, defaults=defaults, path=path, code=code, id_=id_, categorical=categorical, vocabulary=vocabulary,
        expected=lambda filled: expected_row(features, record, filled, path, categorical, vocabulary)))


# The demo's event: 32 doubles (f0..f31) and an id, as a producer with the standard serializer writes it.
demo_schema = {"type": "record", "name": "Event", "namespace": "weir.demo",
               "fields": [{"name": "id", "type": "string"}] + [{"name": f"f{i}", "type": "double"} for i in range(32)]}
demo_features = [f"f{i}" for i in range(32)]
demo_record = {"id": "evt-1", **{f"f{i}": (i - 15.5) / 7.0 for i in range(32)}}
data, _ = serialize(demo_schema, demo_record, topic="demo")
case("demo 32 doubles", data, demo_features, record=demo_record, id_="evt-1")

# Every type a feature may have: int, long, float, double, boolean, decimal (bytes and fixed),
# timestamp-millis, date; a nullable union; and fields the model skips of every other type.
rich = {"type": "record", "name": "Payment", "namespace": "acme.payments", "fields": [
    {"name": "id", "type": "long"},
    {"name": "note", "type": "string"},
    {"name": "amount", "type": {"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 2}},
    {"name": "fee", "type": {"type": "fixed", "name": "Fee", "size": 6, "logicalType": "decimal", "precision": 10, "scale": 3}},
    {"name": "count", "type": "int"},
    {"name": "big", "type": "long"},
    {"name": "ratio", "type": "float"},
    {"name": "score", "type": "double"},
    {"name": "flag", "type": "boolean"},
    {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "day", "type": {"type": "int", "logicalType": "date"}},
    {"name": "maybe", "type": ["null", "double"], "default": None},
    {"name": "tags", "type": {"type": "array", "items": "string"}},
    {"name": "attrs", "type": {"type": "map", "values": ["null", "long", "string"]}},
    {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["CARD", "BANK", "CASH"]}},
    {"name": "raw", "type": "bytes"},
    {"name": "where", "type": {"type": "record", "name": "Where", "fields": [
        {"name": "lat", "type": "double"}, {"name": "lon", "type": "double"}, {"name": "hash", "type": {"type": "fixed", "name": "Hash", "size": 4}}]}},
]}
rich_features = ["amount", "fee", "count", "big", "ratio", "score", "flag", "at", "day", "maybe"]
import datetime
rich_record = {"id": 9007199254740993, "note": "héllo \"quoted\"", "amount": decimal.Decimal("-1234.56"), "fee": decimal.Decimal("12.345"),
               "count": -7, "big": 1 << 40, "ratio": 0.25, "score": -2.5e-3, "flag": True,
               "at": datetime.datetime(2026, 12, 1, 10, 0, tzinfo=datetime.timezone.utc), "day": datetime.date(2026, 12, 1),
               "maybe": 3.5, "tags": ["a", "bb", ""], "attrs": {"x": 1, "y": None, "z": "w"}, "kind": "BANK", "raw": b"\x00\xff",
               "where": {"lat": 52.5, "lon": 13.4, "hash": b"abcd"}}
data, _ = serialize(rich, rich_record, topic="payments")
expected = dict(rich_record)
expected["at"] = 1796119200000.0
expected["day"] = float((datetime.date(2026, 12, 1) - datetime.date(1970, 1, 1)).days)
case("every feature type", data, rich_features, record=expected, id_=9007199254740993)
rich_null = dict(rich_record, maybe=None, tags=[], attrs={})
data, _ = serialize(rich, rich_null, topic="payments")
expected_null = dict(rich_null, at=1796119200000.0, day=expected["day"])
case("nullable union null uses the default", data, rich_features, defaults=[None] * 9 + [-1.0], record=expected_null, id_=9007199254740993)
case("nullable union null without a default", data, rich_features, code="missing-feature")
case("a string feature", data, ["score", "note"], code="not-a-number")
case("an enum feature", data, ["kind"], code="not-a-number")
case("a record feature", data, ["where"], code="not-a-number")
# Categorical features: a string and an enum read as their category's code (the test's vocabulary
# stands in for a model's symbols); a category the vocabulary lacks is unknown (-1); a number is refused.
data, _ = serialize(rich, rich_record, topic="payments")
case("categorical string and enum", data, ["note", "kind", "score"], record=rich_record, id_=9007199254740993,
     categorical=["note", "kind"], vocabulary=["BANK", "héllo \"quoted\"", "CARD"])
case("categories the vocabulary lacks", data, ["note", "kind"], record=rich_record, id_=9007199254740993,
     categorical=["note", "kind"], vocabulary=["CASH"])
case("a number for a category", data, ["count", "kind"], code="not-a-number", categorical=["count", "kind"], vocabulary=["BANK"])

# Schema evolution in one subject: v2 adds a field with a default, v3 removes one and reorders.
v1 = {"type": "record", "name": "Txn", "namespace": "acme", "fields": [
    {"name": "id", "type": "string"}, {"name": "a", "type": "double"}, {"name": "b", "type": "double"}, {"name": "c", "type": "int"}]}
v2 = {"type": "record", "name": "Txn", "namespace": "acme", "fields": v1["fields"] + [{"name": "d", "type": "double", "default": 0.0}]}
v3 = {"type": "record", "name": "Txn", "namespace": "acme", "fields": [
    {"name": "d", "type": "double", "default": 0.0}, {"name": "c", "type": "int"}, {"name": "id", "type": "string"}, {"name": "a", "type": "double"}]}
evolution_features = ["a", "b", "c", "d"]
for label, schema, record in [("v1", v1, {"id": "t1", "a": 1.5, "b": 2.5, "c": 3}),
                              ("v2 adds d", v2, {"id": "t2", "a": 1.5, "b": 2.5, "c": 3, "d": 4.5}),
                              ("v3 drops b and reorders", v3, {"id": "t3", "a": 1.5, "c": 3, "d": 4.5})]:
    data, _ = serialize(schema, record, topic="txns")
    case(f"evolution {label}", data, evolution_features, defaults=[None, -9.0, None, -1.0], record=record, id_=record["id"])

# Nested features (input.features-path): a record inside a nullable union, and an array read by position.
nested = {"type": "record", "name": "Envelope", "fields": [
    {"name": "id", "type": ["null", "string"]},
    {"name": "meta", "type": {"type": "map", "values": "string"}},
    {"name": "payload", "type": ["null", {"type": "record", "name": "Payload", "fields": [
        {"name": "x", "type": "float"}, {"name": "skip", "type": {"type": "array", "items": {"type": "array", "items": "long"}}},
        {"name": "y", "type": ["null", "int", "double"]}]}]}]}
record = {"id": "n1", "meta": {"k": "v"}, "payload": {"x": 0.5, "skip": [[1, 2], [], [3]], "y": 7}}
data, nested_id = serialize(nested, record, topic="nested")
case("features-path record in a union", data, ["x", "y"], path=("payload",), record=record, id_="n1")
record = {"id": None, "meta": {}, "payload": None}
data, _ = serialize(nested, record, topic="nested")
case("features-path union null", data, ["x", "y"], defaults=[1.0, 2.0], path=("payload",), record=record)
positional = {"type": "record", "name": "Vector", "fields": [{"name": "id", "type": "int"},
              {"name": "values", "type": {"type": "array", "items": ["null", "double"]}}]}
record = {"id": 42, "values": [0.5, None, -3.0, 4.0, 99.0]}
data, _ = serialize(positional, record, topic="vectors")
case("features-path array by position", data, ["p0", "p1", "p2", "p3"], defaults=[None, 0.0, None, None], path=("values",),
     record=record, id_=42)

# A recursive type the model skips (a linked list), written by fastavro under an id of its own.
linked = {"type": "record", "name": "Node", "fields": [{"name": "v", "type": "double"},
          {"name": "next", "type": ["null", "Node"]}, {"name": "w", "type": "double"}]}
schemas.append((json.dumps(linked), "AVRO"))
linked_id = len(schemas)
record = {"v": 1.0, "next": {"v": 2.0, "next": {"v": 3.0, "next": None, "w": 0.0}, "w": 0.0}, "w": 5.0}
case("recursive record skipped", fastavro_framed(linked, record, linked_id), ["v", "w"], record=record)

# Dead letters: the frame, truncation, corruption.
good, _ = serialize(v1, {"id": "t9", "a": 1.0, "b": 2.0, "c": 3}, topic="txns")
case("wrong magic byte", b"\x01" + good[1:], evolution_features, code="bad-wire-format")
case("shorter than the frame", good[:3], evolution_features, code="bad-wire-format")
case("truncated in a double", good[:-3], evolution_features, code="malformed-avro")
case("truncated in the id string", good[:7], evolution_features, code="malformed-avro")
case("trailing bytes", good + b"\x00", evolution_features, code="malformed-avro")
bad_union = fastavro_framed(nested, {"id": "u", "meta": {}, "payload": None}, nested_id)
case("union index out of range", bad_union[:5] + b"\x06" + bad_union[6:], ["x", "y"], path=("payload",), code="malformed-avro")
case("negative string length", good[:5] + b"\x03" + good[6:], evolution_features, code="malformed-avro")

json_out = {"generated_with": {"confluent-kafka": confluent_kafka.__version__, "fastavro": fastavro.__version__,
                               "python": sys.version.split()[0]},
            "schemas": {str(i + 1): text for i, (text, _) in enumerate(schemas)},
            "cases": cases}
with open(OUT, "w") as f:
    json.dump(json_out, f, indent=1)
    f.write("\n")
server.shutdown()
print(f"wrote {len(cases)} cases, {len(schemas)} schemas to {os.path.normpath(OUT)}")
