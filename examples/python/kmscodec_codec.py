"""A Temporal Python SDK payload codec that calls a kmscodec sidecar over HTTP.

kmscodec speaks the Temporal Codec Server protocol: ``POST {endpoint}/encode`` and
``POST {endpoint}/decode`` with a ``temporal.api.common.v1.Payloads`` message in proto3 JSON
(``{"payloads": [...]}``), the namespace in the ``X-Namespace`` header, and an answer with exactly
as many payloads, in the same order. The SDK, the Temporal CLI (``--codec-endpoint``) and the Web
UI can then all use the same sidecar, and no key material ever enters the worker.

Usage::

    import dataclasses
    import temporalio.converter
    from temporalio.client import Client
    from kmscodec_codec import KmscodecHttpCodec

    codec = KmscodecHttpCodec("http://127.0.0.1:8089", namespace="default")
    converter = dataclasses.replace(temporalio.converter.default(), payload_codec=codec)
    client = await Client.connect("127.0.0.1:7233", namespace="default",
                                  data_converter=converter)
    # Workers built from this client encode/decode with the sidecar as well.

``{namespace}`` inside ``endpoint`` is replaced by the namespace, as the Temporal CLI does.
``headers`` are added to every request (for example ``{"Authorization": "Bearer T"}``).

Codecs run inside workflow task processing, where the SDK's deadlock detector allows about 2 s:
keep ``timeout`` (seconds, per HTTP call) short and the sidecar close to the worker. Each worker
thread keeps its own keep-alive connection pool (a ``requests.Session``); calls run in the default
executor through ``asyncio.to_thread`` so the event loop never blocks.
"""

from __future__ import annotations

import asyncio
import threading
from typing import List, Mapping, Optional, Sequence

import requests
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.converter import PayloadCodec

__all__ = ["KmscodecHttpCodec", "KmscodecCodecError"]


class KmscodecCodecError(RuntimeError):
    """The sidecar could not be reached, refused the call, or answered malformed data."""


class KmscodecHttpCodec(PayloadCodec):
    """PayloadCodec that POSTs payloads to a kmscodec sidecar's ``/encode`` and ``/decode``."""

    def __init__(
        self,
        endpoint: str,
        namespace: str,
        timeout: float = 1.5,
        headers: Optional[Mapping[str, str]] = None,
    ) -> None:
        super().__init__()
        if not endpoint.startswith(("http://", "https://")):
            raise ValueError(f"codec endpoint must be an http(s) URL, got {endpoint!r}")
        self.endpoint = endpoint.replace("{namespace}", namespace).rstrip("/")
        self.namespace = namespace
        self.timeout = timeout
        self.headers = {
            **dict(headers or {}),
            "Content-Type": "application/json",
            "Accept": "application/json",
            "X-Namespace": namespace,
        }
        self._local = threading.local()

    async def encode(self, payloads: Sequence[Payload]) -> List[Payload]:
        return await self._call("encode", payloads)

    async def decode(self, payloads: Sequence[Payload]) -> List[Payload]:
        return await self._call("decode", payloads)

    async def _call(self, op: str, payloads: Sequence[Payload]) -> List[Payload]:
        if not payloads:
            return []
        body = json_format.MessageToJson(Payloads(payloads=payloads), indent=None)
        return await asyncio.to_thread(self._post, op, body, len(payloads))

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers.update(self.headers)
            self._local.session = session
        return session

    def _post(self, op: str, body: str, expected: int) -> List[Payload]:
        url = f"{self.endpoint}/{op}"
        try:
            resp = self._session().post(url, data=body.encode("utf-8"), timeout=self.timeout)
        except requests.RequestException as exc:
            raise KmscodecCodecError(f"kmscodec {op}: POST {url} failed: {exc}") from exc
        if resp.status_code != 200:
            text = resp.content[:2000].decode("utf-8", "replace")
            raise KmscodecCodecError(
                f"kmscodec {op}: POST {url} answered HTTP {resp.status_code}: {text}"
            )
        out = Payloads()
        try:
            json_format.Parse(resp.content.decode("utf-8"), out, ignore_unknown_fields=True)
        except (json_format.ParseError, UnicodeDecodeError) as exc:
            raise KmscodecCodecError(f"kmscodec {op}: malformed response from {url}: {exc}") from exc
        if len(out.payloads) != expected:
            raise KmscodecCodecError(
                f"kmscodec {op}: sent {expected} payloads to {url} but got {len(out.payloads)} back"
            )
        return list(out.payloads)
