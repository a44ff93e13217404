"""Checks a request's AWS Signature Version 4 with the fake's secret, by signing it again with botocore's
own signer: a wrong secret gets AWS's answer (InvalidSignatureException, S3's SignatureDoesNotMatch)."""
from __future__ import annotations

import hmac
import re

from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

_AUTH = re.compile(r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/"
                   r"(?P<service>[^/]+)/aws4_request, ?SignedHeaders=(?P<headers>[^,]+), ?Signature=(?P<sig>[0-9a-f]+)")


def valid(method: str, url: str, headers, body: bytes, secret: str) -> bool:
    m = _AUTH.match(headers.get("Authorization") or "")
    if not m:
        return False
    signed = m.group("headers").split(";")
    request = AWSRequest(method=method, url=url, data=body,
                         headers={h: headers.get(h, "") for h in signed})
    request.context["timestamp"] = headers.get("X-Amz-Date", "")
    cls = S3SigV4Auth if m.group("service") == "s3" else SigV4Auth
    auth = cls(Credentials(m.group("key"), secret), m.group("service"), m.group("region"))
    canonical = auth.canonical_request(request)
    expected = auth.signature(auth.string_to_sign(request, canonical), request)
    return hmac.compare_digest(expected, m.group("sig"))
