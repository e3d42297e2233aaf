"""Signs one HTTP request with botocore's SigV4Auth, the signer of AWS's Python SDK, and
prints the headers to send as a JSON object.

    sign_sigv4.py METHOD URL --key-id ID --secret-file FILE [--region R]
                  [--body TEXT] [--unsigned-payload] [--age SECONDS] [--header NAME:VALUE]...

--age signs as if the clock were SECONDS behind (an old request); --unsigned-payload
signs with x-amz-content-sha256: UNSIGNED-PAYLOAD, as AWS's examples for VPC Lattice do.
"""
import argparse
import datetime
import json
import sys

import botocore.auth
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("method")
    p.add_argument("url")
    p.add_argument("--key-id", required=True)
    p.add_argument("--secret-file", required=True)
    p.add_argument("--region", default="local")
    p.add_argument("--body", default=None)
    p.add_argument("--unsigned-payload", action="store_true")
    p.add_argument("--age", type=int, default=0)
    p.add_argument("--header", action="append", default=[])
    a = p.parse_args()

    with open(a.secret_file) as f:
        secret = f.read().strip()
    headers = {}
    for h in a.header:
        name, _, value = h.partition(":")
        headers[name.strip()] = value.strip()
    if a.unsigned_payload:
        headers["x-amz-content-sha256"] = "UNSIGNED-PAYLOAD"
    body = a.body.encode() if a.body is not None else None
    request = AWSRequest(method=a.method, url=a.url, data=body, headers=headers)
    if a.age:
        real = botocore.auth.get_current_datetime
        botocore.auth.get_current_datetime = lambda: real() - datetime.timedelta(seconds=a.age)
    SigV4Auth(Credentials(a.key_id, secret), "vpc-lattice-svcs", a.region).add_auth(request)
    json.dump(dict(request.headers.items()), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
