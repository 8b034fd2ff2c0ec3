"""What the fixture scripts share: a Schema Registry shaped REST server (the calls confluent-kafka's
serializers make: register under a subject, read back by id or version; in memory, for one run),
and the shape of a fixture case."""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

schemas = []    # id - 1 -> (schema as registered, schema type)
subjects = {}   # subject -> [ids]


class _Registry(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        parts = self.path.split("?")[0].strip("/").split("/")
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if len(parts) != 3 or parts[0] != "subjects" or parts[2] != "versions":
            return self.answer(404, {"error_code": 404, "message": "not found"})
        entry = (body["schema"], body.get("schemaType", "AVRO"))
        if entry not in schemas:
            schemas.append(entry)
        sid = schemas.index(entry) + 1
        subjects.setdefault(parts[1], [])
        if sid not in subjects[parts[1]]:
            subjects[parts[1]].append(sid)
        self.answer(200, {"id": sid, "schemaType": entry[1], "schema": entry[0], "version": subjects[parts[1]].index(sid) + 1})

    def do_GET(self):
        parts = self.path.split("?")[0].strip("/").split("/")
        if len(parts) == 3 and parts[:2] == ["schemas", "ids"]:
            sid = int(parts[2])
            if 1 <= sid <= len(schemas):
                text, kind = schemas[sid - 1]
                return self.answer(200, {"schema": text} if kind == "AVRO" else {"schema": text, "schemaType": kind})
            return self.answer(404, {"error_code": 40403, "message": f"Schema {sid} not found"})
        if len(parts) == 4 and parts[0] == "subjects" and parts[2] == "versions" and parts[1] in subjects:
            ids = subjects[parts[1]]
            version = len(ids) if parts[3] == "latest" else int(parts[3])
            sid = ids[version - 1]
            return self.answer(200, {"subject": parts[1], "id": sid, "version": version, "schema": schemas[sid - 1][0]})
        self.answer(404, {"error_code": 40401, "message": "Subject not found."})


def start():
    """Starts the server on a free port; returns (server, url). Call server.shutdown() at the end."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Registry)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def category_code(value, vocabulary):
    """A categorical feature's expected value: its place in the case's vocabulary, -1 when absent."""
    return float(vocabulary.index(value)) if value in vocabulary else -1.0


def fixture_case(name, data, features, *, defaults, path, code, id_, categorical, vocabulary, expected):
    """One fixture case: the framed value, the model's features, and the dead-letter code or the row
    `expected()` gives (with each feature's defaulted flag) and the echoed id."""
    import base64
    defaults = defaults if defaults is not None else [None] * len(features)
    entry = {"name": name, "value": base64.b64encode(data).decode(), "features": features, "defaults": defaults,
             "features_path": list(path)}
    if categorical:
        entry["categorical"] = list(categorical)
        entry["vocabulary"] = list(vocabulary)
    if code:
        entry["code"] = code
    else:
        entry["row"], entry["defaulted"] = expected(defaults)
        entry["id"] = id_
    return entry
