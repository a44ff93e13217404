"""The client side of the local endpoint (`predict --endpoint`): requests sized by the limits the server
advertises at GET /health, 503s retried after their Retry-After, refused images named by their file."""
from __future__ import annotations

import base64
import json
import re
import time
import urllib.error
import urllib.request

from ...errors import DataError, ProviderError


class EndpointClient:
    """One server's client; it asks the server's limits once."""

    def __init__(self, url: str):
        self.url = url
        self._limits: tuple[int, int] | None = None

    def score(self, images: list[bytes], names: list[str]) -> list[dict[str, float]]:
        """Requests sized by the server's advertised limits (GET /health): as many images as fit its body
        and image limits in one Vertex body; an image whose base64 alone would not fit goes as raw bytes."""
        max_body, max_images = self.limits()
        scores = []
        for batch in batches([len(b) for b in images], max_body, max_images):
            start, end = batch[0], batch[-1] + 1
            if json_size([len(images[start])]) > max_body:  # a single image, sent as itself (3/4 the size)
                if len(images[start]) > max_body:
                    raise DataError(f"{names[start]} is {len(images[start])} bytes, over the endpoint's limit of "
                                    f"{max_body} bytes", hint="raise deploy.limits.max_body_bytes and redeploy, "
                                                              "or predict with --offline", path=names[start])
                answer = self._post(images[start], "application/octet-stream", names[start:end])
                scores.append({p["tagName"]: p["probability"] for p in answer["predictions"]})
                continue
            body = json.dumps({"instances": [{"content": base64.b64encode(b).decode()} for b in images[start:end]],
                               "parameters": {"confidenceThreshold": 0.0, "maxPredictions": 100000}}).encode()
            answer = self._post(body, "application/json", names[start:end])
            scores += [dict(zip(p["displayNames"], p["confidences"])) for p in answer["predictions"]]
        return scores

    def limits(self) -> tuple[int, int]:
        """(max body bytes, max images) the server advertises; a server too old to say gets 8 MiB and 16."""
        if self._limits:
            return self._limits
        url = self.url
        try:
            with urllib.request.urlopen(url + "/health", timeout=10) as resp:
                limits = json.loads(resp.read()).get("limits") or {}
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise ProviderError(f"cannot reach the endpoint {url}: {exc}", hint="is the server still running?")
        found = (int(limits.get("max_body_bytes", 8 * 1024 * 1024)), int(limits.get("max_images", 16)))
        self._limits = found
        return found

    def _post(self, body: bytes, content_type: str, names: list[str], retries: int = 6):
        """The answer to one POST /predict; 503s are retried after their Retry-After (a few times, at
        most 30 s each); a refused image is a DataError naming its file."""
        url = self.url
        for attempt in range(retries + 1):
            req = urllib.request.Request(url + "/predict", data=body, headers={"Content-Type": content_type})
            try:
                with urllib.request.urlopen(req, timeout=120) as resp:
                    return json.loads(resp.read())
            except urllib.error.HTTPError as exc:
                message = exc.read().decode(errors="replace")[:500]
                try:
                    message = json.loads(message)["error"]
                except (ValueError, KeyError, TypeError):
                    pass
                if exc.code == 503 and attempt < retries:
                    time.sleep(retry_after(exc.headers.get("Retry-After"), attempt))
                    continue
                if exc.code in (400, 413, 422):
                    # The server names an image by its place in the request: give the file instead.
                    message = re.sub(r"image #(\d+)", lambda m: names[int(m.group(1))]
                                     if int(m.group(1)) < len(names) else m.group(0), message)
                    raise DataError(f"the endpoint refused the images: {message}", hint="check the image files")
                raise ProviderError(f"the endpoint answered {exc.code}: {message}")
            except (urllib.error.URLError, OSError) as exc:
                raise ProviderError(f"cannot reach the endpoint {url}: {exc}", hint="is the server still running?")
        raise AssertionError("unreachable")


def json_size(sizes: list[int]) -> int:
    """Bytes of the Vertex body EndpointClient.score sends for images of these sizes (base64 is 4/3, plus keys)."""
    return 96 + sum(4 * -(-n // 3) + 16 for n in sizes)


def batches(sizes: list[int], max_body: int, max_images: int) -> list[list[int]]:
    """Indices of the images, in order, grouped so that each group's body fits `max_body` and `max_images`
    (an image too large for any body is a group of its own)."""
    groups: list[list[int]] = []
    for i, n in enumerate(sizes):
        group = groups[-1] if groups else None
        if group and len(group) < max_images and json_size([sizes[j] for j in group] + [n]) <= max_body:
            group.append(i)
        else:
            groups.append([i])
    return groups


def retry_after(header: str | None, attempt: int) -> float:
    try:
        seconds = float(header)
    except (TypeError, ValueError):
        seconds = 2.0 ** attempt / 2  # no (or a date) Retry-After: back off 0.5, 1, 2 … s
    return min(max(seconds, 0.1), 30.0)


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False
