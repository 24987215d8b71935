"""A Temporal Python SDK payload codec that calls a kmscodec sidecar over HTTP.

kmscodec speaks the Temporal Codec Server protocol: ``POST {endpoint}/encode`` and
``POST {endpoint}/decode`` with a ``temporal.api.common.v1.Payloads`` message in proto3 JSON
(``{"payloads": [...]}``), the namespace in the ``X-Namespace`` header, and an answer with exactly
as many payloads, in the same order. The SDK, the Temporal CLI (``--codec-endpoint``) and the Web
UI can then all use the same sidecar, and no key material ever enters the worker.

Usage::

    from temporalio.client import Client
    from kmscodec_codec import KmscodecHttpCodec, kmscodec_data_converter

    codec = KmscodecHttpCodec("http://127.0.0.1:8089", namespace="default")
    client = await Client.connect("127.0.0.1:7233", namespace="default",
                                  data_converter=kmscodec_data_converter(codec))
    # Workers built from this client encode/decode with the sidecar as well.

``{namespace}`` inside ``endpoint`` is replaced by the namespace, as the Temporal CLI does.
``headers`` are added to every request (for example ``{"Authorization": "Bearer T"}``).

One ``urllib3.PoolManager`` per codec keeps up to ``pool_size`` keep-alive connections, shared by
every thread (urllib3 pools are thread-safe); calls run in the default executor through
``asyncio.to_thread`` so the event loop never blocks. ``timeout`` (seconds) bounds one
encode/decode call, retries included: a refused or reset connection and HTTP 503 are retried
while time is left. Codecs run inside workflow task processing: keep the timeout short and the
sidecar next to the worker (docs/sdk-integration.md). For gRPC see ``kmscodec_grpc_codec.py``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Mapping, Sequence
from typing import Optional

import temporalio.converter
import urllib3
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.converter import DataConverter, PayloadCodec

__all__ = ["KmscodecHttpCodec", "KmscodecCodecError", "codec_for", "kmscodec_data_converter"]

# Attempts per call; each waits a little longer, and none starts after the deadline.
_ATTEMPTS = 3
_BACKOFF_SECONDS = 0.025


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
        pool_size: int = 16,
    ) -> None:
        super().__init__()
        if not endpoint.startswith(("http://", "https://")):
            raise ValueError(f"codec endpoint must be an http(s) URL, got {endpoint!r}")
        self.endpoint = endpoint.replace("{namespace}", namespace).rstrip("/")
        self.namespace = namespace
        self.timeout = timeout
        self._pool = urllib3.PoolManager(
            maxsize=pool_size,
            block=False,  # past pool_size, open an extra connection rather than wait
            retries=False,  # retries are ours, bounded by the call's deadline
            headers={
                **dict(headers or {}),
                "Content-Type": "application/json",
                "Accept": "application/json",
                "X-Namespace": namespace,
            },
        )

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Seals every payload (one output per input, in order); raises KmscodecCodecError."""
        return await self._call("encode", payloads)

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Opens payloads kmscodec sealed, passes others through; raises KmscodecCodecError."""
        return await self._call("decode", payloads)

    async def _call(self, op: str, payloads: Sequence[Payload]) -> list[Payload]:
        if not payloads:
            return []
        body = json_format.MessageToJson(Payloads(payloads=payloads), indent=None).encode()
        return await asyncio.to_thread(self._post, op, body, len(payloads))

    def _post(self, op: str, body: bytes, expected: int) -> list[Payload]:
        url = f"{self.endpoint}/{op}"
        deadline = time.monotonic() + self.timeout
        for attempt in range(1, _ATTEMPTS + 1):
            remaining = deadline - time.monotonic()
            last = attempt == _ATTEMPTS or remaining < 2 * _BACKOFF_SECONDS * attempt
            try:
                resp = self._pool.request(
                    "POST", url, body=body, timeout=urllib3.Timeout(total=max(remaining, 0.001))
                )
            except (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ProtocolError) as exc:
                # Refused (sidecar restarting) or reset (an idle keep-alive socket closed).
                if last:
                    raise KmscodecCodecError(f"kmscodec {op}: POST {url} failed: {exc}") from exc
            except urllib3.exceptions.HTTPError as exc:  # timeouts and the rest: no retry
                raise KmscodecCodecError(f"kmscodec {op}: POST {url} failed: {exc}") from exc
            else:
                if resp.status == 200:
                    return _parse(op, url, resp.data, expected)
                if resp.status != 503 or last:
                    text = resp.data[:2000].decode("utf-8", "replace")
                    raise KmscodecCodecError(
                        f"kmscodec {op}: POST {url} answered HTTP {resp.status}: {text}"
                    )
            time.sleep(_BACKOFF_SECONDS * attempt)
        raise AssertionError("unreachable")


def _parse(op: str, url: str, content: bytes, expected: int) -> list[Payload]:
    out = Payloads()
    try:
        json_format.Parse(content.decode("utf-8"), out, ignore_unknown_fields=True)
    except (json_format.ParseError, UnicodeDecodeError) as exc:
        raise KmscodecCodecError(f"kmscodec {op}: malformed response from {url}: {exc}") from exc
    if len(out.payloads) != expected:
        raise KmscodecCodecError(
            f"kmscodec {op}: sent {expected} payloads to {url} but got {len(out.payloads)} back"
        )
    return list(out.payloads)


def codec_for(endpoint: str, namespace: str, timeout: float = 1.5) -> PayloadCodec:
    """``http(s)://`` → :class:`KmscodecHttpCodec`; ``grpc://HOST:PORT`` or ``unix:PATH`` →
    ``kmscodec_grpc_codec.KmscodecGrpcCodec`` (imported only then: grpcio is optional)."""
    if endpoint.startswith(("http://", "https://")):
        return KmscodecHttpCodec(endpoint, namespace, timeout=timeout)
    if endpoint.startswith(("grpc://", "unix:")):
        from kmscodec_grpc_codec import KmscodecGrpcCodec

        return KmscodecGrpcCodec(endpoint, namespace, timeout=timeout)
    raise ValueError(f"unsupported codec endpoint {endpoint!r}: use http(s)://, grpc:// or unix:")


def kmscodec_data_converter(codec: PayloadCodec) -> DataConverter:
    """The SDK's default converter with ``codec`` and encoded failure attributes: failure messages
    and stack traces move into a payload the codec seals (only "Encoded failure" stays plain)."""
    return dataclasses.replace(
        temporalio.converter.default(),
        payload_codec=codec,
        failure_converter_class=temporalio.converter.DefaultFailureConverterWithEncodedAttributes,
    )
