#!/usr/bin/env python3
"""Writes the Protobuf fixtures (Tests/WeirCodecTests/Fixtures/protobuf-cases.json) with the real serializer.

Each case is one Confluent-framed value written by confluent-kafka's ProtobufSerializer (through a
Schema Registry REST server this script runs) from messages the protobuf runtime built, or a
corrupted copy of one; with the `.proto` text a registry returns for its id, the model's features,
and what Weir must read: the row (computed here from the message with protobuf's own presence
rules) or the dead-letter code. Regenerate: python3 scripts/make-protobuf-fixtures.py
(needs grpcio-tools and confluent-kafka[protobuf]).
"""
import importlib, json, math, os, struct, sys, tempfile

import fixture_registry

import confluent_kafka, google.protobuf
from grpc_tools import protoc
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

OUT = os.path.join(os.path.dirname(__file__), "..", "Tests", "WeirCodecTests", "Fixtures", "protobuf-cases.json")

PROTO_V1 = """syntax = "proto3";
package acme.payments;

// A payment, with a field of every scalar type.
message Payment {
  string id = 1;
  double amount = 2;
  float ratio = 3;
  int32 count = 4;
  int64 big = 5;
  uint32 u32 = 6;
  sint32 s32 = 7;
  sint64 s64 = 8;
  fixed32 f32 = 9;
  sfixed64 sf64 = 10;
  bool flag = 11;
  optional double maybe = 12;
  string note = 13;
  Kind kind = 14;
  repeated string tags = 15;
  map<string, int64> attrs = 16;
  Where where = 17;
  oneof choice {
    double left = 18;
    string right = 19;
  }
  enum Kind { CARD = 0; BANK = 1; }
  message Where { double lat = 1; double lon = 2; }
}

/* Features one level down, and a nested message sent on its own. */
message Envelope {
  int64 id = 1;
  Features features = 2;
  message Features {
    double x = 1;
    optional double y = 2;
    repeated double vector = 3 [packed = true];
  }
}

message Vector {
  int32 id = 1;
  repeated float values = 2;
}
"""

# The well-known types: wrappers (numbers with presence) and a timestamp (read as milliseconds).
PROTO_SENSORS = """syntax = "proto3";
package acme.sensors;

import "google/protobuf/wrappers.proto";
import "google/protobuf/timestamp.proto";

message Reading {
  string id = 1;
  google.protobuf.DoubleValue temperature = 2;
  google.protobuf.Int64Value count = 3;
  google.protobuf.BoolValue ok = 4;
  google.protobuf.Timestamp at = 5;
  google.protobuf.StringValue label = 6;
}
"""

WRAPPERS = {"google.protobuf.DoubleValue", "google.protobuf.FloatValue", "google.protobuf.Int64Value", "google.protobuf.UInt64Value",
            "google.protobuf.Int32Value", "google.protobuf.UInt32Value", "google.protobuf.BoolValue"}

# v2 of Payment's subject: `amount` moved to a new number, `big` removed, a field added (its own
# package: both versions live in one protobuf runtime here).
PROTO_V2 = """syntax = "proto3";
package acme.payments.v2;
message Payment {
  string id = 1;
  float ratio = 3;
  int32 count = 4;
  double amount = 20;
  string channel = 21;
}
"""

def compile_proto(text, name):
    directory = tempfile.mkdtemp()
    with open(os.path.join(directory, name + ".proto"), "w") as f:
        f.write(text)
    well_known = os.path.join(os.path.dirname(protoc.__file__), "_proto")  # google/protobuf/*.proto
    assert protoc.main(["protoc", f"-I{directory}", f"-I{well_known}", f"--python_out={directory}", name + ".proto"]) == 0
    sys.path.insert(0, directory)
    return importlib.import_module(name + "_pb2")


v1 = compile_proto(PROTO_V1, "payments_v1")
server, url = fixture_registry.start()
client = SchemaRegistryClient({"url": url})
texts = {}     # schema id -> the .proto text a registry returns for it
cases = []


def serialize(message, text, topic):
    serializer = ProtobufSerializer(type(message), client, {"use.deprecated.format": False, "auto.register.schemas": True})
    data = serializer(message, SerializationContext(topic, MessageField.VALUE))
    sid = struct.unpack(">I", data[1:5])[0]
    texts[sid] = text
    return data


def expected(message, features, defaults, path=(), categorical=(), vocabulary=()):
    """The row Weir must read: protobuf's presence rules, NaN as missing, bools as 0/1."""
    holder = message
    for name in path:
        field = holder.DESCRIPTOR.fields_by_name[name]
        if field.is_repeated if hasattr(field, "is_repeated") else field.label == field.LABEL_REPEATED:
            holder = list(getattr(holder, name))
            break
        if not holder.HasField(name):
            holder = None
            break
        holder = getattr(holder, name)
    row, defaulted = [], []
    for index, name in enumerate(features):
        value = None
        if isinstance(holder, list):
            value = holder[index] if index < len(holder) else None
        elif holder is not None and name in holder.DESCRIPTOR.fields_by_name:
            field = holder.DESCRIPTOR.fields_by_name[name]
            if field.has_presence and not holder.HasField(name):
                value = None
            elif field.message_type is not None and field.message_type.full_name in WRAPPERS:
                value = getattr(holder, name).value
            elif field.message_type is not None and field.message_type.full_name == "google.protobuf.Timestamp":
                stamp = getattr(holder, name)
                value = stamp.seconds * 1000 + stamp.nanos / 1e6
            else:
                value = getattr(holder, name)
        if name in categorical and isinstance(value, str):
            value = fixture_registry.category_code(value, vocabulary)
        if isinstance(value, bool):
            value = 1.0 if value else 0.0
        if value is None or (isinstance(value, float) and math.isnan(value)):
            assert defaults[index] is not None, f"{name} has no default"
            row.append(defaults[index]); defaulted.append(True)
        else:
            row.append(float(value)); defaulted.append(False)
    return row, defaulted


def case(name, data, features, *, defaults=None, path=(), message=None, code=None, id_=None, categorical=(), vocabulary=()):
    cases.append(fixture_registry.fixture_case(
        name, data, features, defaults=defaults, path=path, code=code, id_=id_, categorical=categorical, vocabulary=vocabulary,
        expected=lambda filled: expected(message, features, filled, path, categorical, vocabulary)))


numeric = ["amount", "ratio", "count", "big", "u32", "s32", "s64", "f32", "sf64", "flag", "maybe"]
full = v1.Payment(id="p-1", amount=-1234.5, ratio=0.25, count=-7, big=1 << 40, u32=4000000000, s32=-99, s64=-(1 << 35),
                  f32=123456, sf64=-42, flag=True, maybe=3.5, note="héllo", kind=v1.Payment.BANK, tags=["a", "b"],
                  attrs={"x": 1}, where=v1.Payment.Where(lat=52.5, lon=13.4), left=0.125)
data = serialize(full, PROTO_V1, "payments")
case("every scalar type", data, numeric + ["left"], message=full, id_="p-1")
zeros = v1.Payment(id="p-2", note="zero values are not on the wire")
data = serialize(zeros, PROTO_V1, "payments")
case("proto3 zeros and an unset optional", data, numeric, defaults=[None] * 10 + [-1.0], message=zeros, id_="p-2")
case("an unset optional without a default", data, numeric, code="missing-feature")
case("a string feature", data, ["amount", "note"], code="not-a-number")
case("an enum feature", data, ["kind"], code="not-a-number")
case("a repeated feature", data, ["tags"], code="not-a-number")
# Categorical features: a string reads as its category's place in the vocabulary (-1 when absent);
# a number, or an enum (whose names a plan does not keep), is refused.
data = serialize(full, PROTO_V1, "payments")
case("a categorical string", data, ["note", "amount"], message=full, id_="p-1", categorical=["note"], vocabulary=["hello", "héllo"])
case("a category the vocabulary lacks", data, ["note"], message=full, id_="p-1", categorical=["note"], vocabulary=["other"])
case("a number for a category", data, ["count"], code="not-a-number", categorical=["count"], vocabulary=["x"])
case("an enum for a category", data, ["kind"], code="not-a-number", categorical=["kind"], vocabulary=["BANK"])
data = serialize(zeros, PROTO_V1, "payments")
case("a message feature", data, ["where"], code="not-a-number")
right = v1.Payment(id="p-3", right="chosen", amount=1.5)
data = serialize(right, PROTO_V1, "payments")
case("the other oneof branch leaves left missing", data, ["amount", "left"], defaults=[None, 9.0], message=right, id_="p-3")
nan = v1.Payment(id="p-4", amount=float("nan"), ratio=float("inf"))
data = serialize(nan, PROTO_V1, "payments")
case("NaN is missing", data, ["amount"], defaults=[-5.0], message=nan, id_="p-4")
case("infinity is not a number", data, ["ratio"], code="not-a-number")

envelope = v1.Envelope(id=77, features=v1.Envelope.Features(x=0.5, y=2.5, vector=[1.0, 2.0, 3.0]))
data = serialize(envelope, PROTO_V1, "envelopes")
case("features-path message", data, ["x", "y"], path=("features",), message=envelope, id_=77)
case("features-path repeated by position", data, ["v0", "v1", "v2", "v3"], defaults=[None, None, None, 0.0],
     path=("features", "vector"), message=envelope, id_=77)
empty = v1.Envelope(id=78)
data = serialize(empty, PROTO_V1, "envelopes")
case("features-path message absent", data, ["x", "y"], defaults=[1.0, 2.0], path=("features",), message=empty, id_=78)
inner = v1.Envelope.Features(x=-1.0, vector=[4.0])
data = serialize(inner, PROTO_V1, "features")
case("a nested message on its own (indexes [1, 0])", data, ["x", "y"], defaults=[None, 8.0], message=inner)
vector = v1.Vector(id=5, values=[0.5, -0.25, 8.0])
data = serialize(vector, PROTO_V1, "vectors")
case("packed floats by position", data, ["a", "b", "c"], path=("values",), message=vector, id_=5)

# Random messages: any subset of fields set, values across each type's range (a fixed seed).
import random
rng = random.Random(22)
for index in range(120):
    message = v1.Payment(id=f"r-{index}")
    for name, make in [("amount", lambda: rng.choice([0.0, -0.0, rng.uniform(-1e9, 1e9), 1e-40, 3.4e38])),
                       ("ratio", lambda: rng.uniform(-1e6, 1e6)), ("count", lambda: rng.randint(-2**31, 2**31 - 1)),
                       ("big", lambda: rng.randint(-2**63, 2**63 - 1)), ("u32", lambda: rng.randint(0, 2**32 - 1)),
                       ("s32", lambda: rng.randint(-2**31, 2**31 - 1)), ("s64", lambda: rng.randint(-2**63, 2**63 - 1)),
                       ("f32", lambda: rng.randint(0, 2**32 - 1)), ("sf64", lambda: rng.randint(-2**63, 2**63 - 1)),
                       ("flag", lambda: rng.random() < 0.5), ("maybe", lambda: rng.uniform(-5, 5)), ("left", lambda: rng.uniform(-1, 1)),
                       ("note", lambda: "x" * rng.randint(0, 300)), ("tags", None)]:
        if rng.random() < 0.6:
            if name == "tags":
                message.tags.extend(["t"] * rng.randint(0, 3))
            else:
                setattr(message, name, make())
    data = serialize(message, PROTO_V1, "payments")
    case(f"random payment {index}", data, numeric + ["left"], defaults=[None] * 10 + [-1.0, -2.0], message=message, id_=f"r-{index}")

sensors = compile_proto(PROTO_SENSORS, "sensors")
from google.protobuf import timestamp_pb2, wrappers_pb2
reading = sensors.Reading(id="s-1", temperature=wrappers_pb2.DoubleValue(value=21.5), count=wrappers_pb2.Int64Value(value=-3),
                          ok=wrappers_pb2.BoolValue(value=True), at=timestamp_pb2.Timestamp(seconds=1796119200, nanos=250_000_000),
                          label=wrappers_pb2.StringValue(value="x"))
data = serialize(reading, PROTO_SENSORS, "readings")
case("well-known wrappers and a timestamp", data, ["temperature", "count", "ok", "at"], message=reading, id_="s-1")
case("a StringValue feature", data, ["label"], code="not-a-number")
zero = sensors.Reading(id="s-2", temperature=wrappers_pb2.DoubleValue(value=0.0), ok=wrappers_pb2.BoolValue(value=False))
data = serialize(zero, PROTO_SENSORS, "readings")
case("a wrapper present with its zero is 0; an absent one is missing", data, ["temperature", "ok", "count", "at"],
     defaults=[None, None, -1.0, -2.0], message=zero, id_="s-2")
case("an absent wrapper without a default", data, ["count"], code="missing-feature")

v2 = compile_proto(PROTO_V2, "payments_v2")
evolved = v2.Payment(id="p-9", ratio=0.75, count=3, amount=99.0, channel="web")
data = serialize(evolved, PROTO_V2, "payments")
case("schema evolution: amount renumbered, big removed", data, ["amount", "ratio", "count", "big"], defaults=[None, None, None, -1.0],
     message=evolved, id_="p-9")
# `big` is absent from v2: the expected row above reads it from a message without the field.

good = serialize(full, PROTO_V1, "payments")
case("wrong magic byte", b"\x01" + good[1:], ["amount"], code="bad-wire-format")
case("truncated", good[:-3], ["amount"], code="malformed-protobuf")
case("a wire type that does not exist", good[:6] + bytes([0x0F]) + good[7:], ["amount"], code="malformed-protobuf")
case("a length beyond the end", good[:6] + bytes([0x0A, 0x7F]) + good[8:], ["amount"], code="malformed-protobuf")
case("message indexes naming no message", good[:5] + bytes([0x02, 0x0E]) + good[6:], ["amount"], code="malformed-protobuf")
# An extra amount (field 2, a double) sent first as a varint: protobuf keeps it as an unknown field,
# and the real amount after it stands.
mismatched = good[:6] + bytes([0x10, 0x05]) + good[6:]
reparsed = v1.Payment()
reparsed.ParseFromString(mismatched[6:])
case("a field sent with another wire type is skipped", mismatched, ["amount", "count"], message=reparsed, id_="p-1")

out = {"generated_with": {"confluent-kafka": confluent_kafka.__version__, "protobuf": google.protobuf.__version__,
                          "python": sys.version.split()[0]},
       "schemas": {str(k): v for k, v in sorted(texts.items())}, "cases": cases}
with open(OUT, "w") as f:
    json.dump(out, f, indent=1)
    f.write("\n")
server.shutdown()
print(f"wrote {len(cases)} cases, {len(texts)} schemas to {os.path.normpath(OUT)}")
