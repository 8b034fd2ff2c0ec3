#!/usr/bin/env python3
"""Writes Tests/WeirWorkerTests/Fixtures/sigv4-goldens.json: AWS Signature Version 4 headers that
botocore (the AWS SDK for Python) computes for fixed S3 requests, which Weir's signer must equal."""
import datetime
import hashlib
import json
import pathlib
from unittest import mock

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

CASES = [
    # (name, method, url, body, session token, region)
    ("get-path-style", "GET", "http://127.0.0.1:9000/models/fraud/1.4.0/manifest.json", b"", None, "us-east-1"),
    ("get-virtual-host", "GET", "https://bundles.s3.eu-west-1.amazonaws.com/fraud/1.4.0/model.onnx", b"", None, "eu-west-1"),
    ("put-with-session-token", "PUT", "https://s3.us-west-2.amazonaws.com/bundles/a%20b/c~d_e-f.g/manifest.json",
     b'{"name":"fraud"}', "FwoGZXIvYXdzEXAMPLETOKEN", "us-west-2"),
    ("create-bucket", "PUT", "http://localhost:4566/new-bucket", b"", None, "us-east-1"),
]
WHEN = datetime.datetime(2026, 12, 7, 8, 30, 15)


def main():
    out = []
    for name, method, url, body, token, region in CASES:
        credentials = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
        request = AWSRequest(method=method, url=url, data=body)
        request.headers["X-Amz-Content-SHA256"] = hashlib.sha256(body).hexdigest()
        with mock.patch("botocore.auth.get_current_datetime", return_value=WHEN):
            S3SigV4Auth(credentials, "s3", region).add_auth(request)
        assert request.headers["X-Amz-Date"] == WHEN.strftime("%Y%m%dT%H%M%SZ")
        out.append({
            "name": name, "method": method, "url": url, "body": body.decode(), "session_token": token,
            "region": region, "date": WHEN.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "authorization": request.headers["Authorization"],
        })
    target = pathlib.Path(__file__).resolve().parent.parent / "Tests/WeirWorkerTests/Fixtures/sigv4-goldens.json"
    target.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {len(out)} cases to {target}")


if __name__ == "__main__":
    main()
