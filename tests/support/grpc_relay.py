"""A gRPC relay in front of the real Pub/Sub emulator that records each call's method and headers.

The emulator ignores request headers (the routing header, the client's `x-goog-api-client`), so a
publish that lost them would pass every test and first fail in production. This relay forwards
each unary call byte for byte (no message decoded, nothing of the emulator faked) and keeps what
the caller sent alongside it.
"""

from __future__ import annotations

import concurrent.futures
from typing import Any

import grpc


class GrpcRelay:
    def __init__(self, target: str) -> None:
        self.calls: list[tuple[str, dict[str, str]]] = []  # (method, metadata) in arrival order
        self._channel = grpc.insecure_channel(target)
        self._server = grpc.server(concurrent.futures.ThreadPoolExecutor(4), handlers=[_Forward(self)])
        self.address = f"127.0.0.1:{self._server.add_insecure_port('127.0.0.1:0')}"
        self._server.start()

    def forward(self, method: str, request: bytes, context: grpc.ServicerContext) -> bytes:
        self.calls.append((method, {key: str(value) for key, value in context.invocation_metadata()}))
        call = self._channel.unary_unary(method)  # raw bytes both ways: nothing decoded here
        try:
            return call(request, timeout=context.time_remaining())
        except grpc.RpcError as exc:
            context.abort(exc.code(), exc.details())  # type: ignore[attr-defined]  # a failed call is a grpc.Call
            raise

    def close(self) -> None:
        self._server.stop(grace=None)
        self._channel.close()


class _Forward(grpc.GenericRpcHandler):
    def __init__(self, relay: GrpcRelay) -> None:
        self.relay = relay

    def service(self, handler_call_details: Any) -> grpc.RpcMethodHandler:
        method = handler_call_details.method
        return grpc.unary_unary_rpc_method_handler(
            lambda request, context: self.relay.forward(method, request, context)
        )
