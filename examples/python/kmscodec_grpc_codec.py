"""A Temporal Python SDK payload codec that calls a kmscodec sidecar's gRPC service.

The service is ``kmscodec.v1.Codec`` (``proto/kmscodec/v1/codec.proto``)::

    rpc Encode(EncodeRequest) returns (temporal.api.common.v1.Payloads);
    rpc Decode(DecodeRequest) returns (temporal.api.common.v1.Payloads);
    message EncodeRequest { string namespace = 1; repeated temporal.api.common.v1.Payload payloads = 2; }

Its Payload is Temporal's own message, so the SDK's ``Payload`` class serializes straight into the
request and ``Payloads.FromString`` reads the answer: no generated code and no protoc.

Usage::

    from kmscodec_codec import kmscodec_data_converter
    from kmscodec_grpc_codec import KmscodecGrpcCodec

    codec = KmscodecGrpcCodec("unix:///run/kmscodec/codec.sock", namespace="default")
    # or KmscodecGrpcCodec("grpc://127.0.0.1:9090", namespace="default")
    client = await Client.connect(..., data_converter=kmscodec_data_converter(codec))

One ``grpc.aio`` channel (HTTP/2, kept alive) is opened on the first call, in the event loop the
SDK calls the codec from. ``timeout`` (seconds) is each call's deadline; inside it gRPC retries
UNAVAILABLE (sidecar restarting, key provider outage) up to 3 attempts with a short backoff.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Optional

import grpc
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.converter import PayloadCodec

from kmscodec_codec import KmscodecCodecError

__all__ = ["KmscodecGrpcCodec"]

_SERVICE_CONFIG = json.dumps(
    {
        "methodConfig": [
            {
                "name": [{"service": "kmscodec.v1.Codec"}],
                "retryPolicy": {
                    "maxAttempts": 3,
                    "initialBackoff": "0.025s",
                    "maxBackoff": "0.2s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
)


class KmscodecGrpcCodec(PayloadCodec):
    """PayloadCodec that calls ``kmscodec.v1.Codec/Encode`` and ``/Decode``."""

    def __init__(
        self,
        target: str,
        namespace: str,
        timeout: float = 1.5,
        metadata: Optional[Mapping[str, str]] = None,
    ) -> None:
        """``target``: ``grpc://HOST:PORT``, ``HOST:PORT`` or ``unix:///path/codec.sock``.
        Plaintext: the sidecar listens on loopback or a socket file only its pod can reach."""
        super().__init__()
        self.target = target.removeprefix("grpc://")
        self.namespace = namespace
        self.timeout = timeout
        self._metadata = tuple((k.lower(), v) for k, v in (metadata or {}).items())
        self._channel: Optional[grpc.aio.Channel] = None
        self._methods: dict[str, grpc.aio.UnaryUnaryMultiCallable] = {}

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Seals every payload (one output per input, in order); raises KmscodecCodecError."""
        return await self._call("Encode", payloads)

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Opens payloads kmscodec sealed, passes others through; raises KmscodecCodecError."""
        return await self._call("Decode", payloads)

    async def close(self) -> None:
        """Closes the channel (call on shutdown)."""
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    def _method(self, name: str) -> grpc.aio.UnaryUnaryMultiCallable:
        if self._channel is None:
            self._channel = grpc.aio.insecure_channel(
                self.target,
                options=[
                    ("grpc.service_config", _SERVICE_CONFIG),
                    ("grpc.enable_retries", 1),
                    ("grpc.keepalive_time_ms", 30_000),
                ],
            )
            self._methods = {
                m: self._channel.unary_unary(
                    f"/kmscodec.v1.Codec/{m}",
                    request_serializer=_serialize_request,
                    response_deserializer=Payloads.FromString,
                )
                for m in ("Encode", "Decode")
            }
        return self._methods[name]

    async def _call(self, name: str, payloads: Sequence[Payload]) -> list[Payload]:
        if not payloads:
            return []
        try:
            out: Payloads = await self._method(name)(
                (self.namespace, payloads), timeout=self.timeout, metadata=self._metadata
            )
        except grpc.aio.AioRpcError as exc:
            raise KmscodecCodecError(
                f"kmscodec {name} via {self.target}: {exc.code().name}: {exc.details()}"
            ) from exc
        if len(out.payloads) != len(payloads):
            raise KmscodecCodecError(
                f"kmscodec {name}: sent {len(payloads)} payloads, got {len(out.payloads)} back"
            )
        return list(out.payloads)


def _serialize_request(request: tuple[str, Sequence[Payload]]) -> bytes:
    """``EncodeRequest``/``DecodeRequest`` in protobuf wire format: field 1 (the namespace) and
    each field-2 entry (a serialized Payload) are length-delimited, tag ``(field << 3) | 2``."""
    namespace, payloads = request
    out = bytearray()
    for tag, value in [(0x0A, namespace.encode())] + [(0x12, p.SerializeToString()) for p in payloads]:
        out.append(tag)
        out += _varint(len(value))
        out += value
    return bytes(out)


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
