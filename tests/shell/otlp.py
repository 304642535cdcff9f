"""In-process OTLP receivers: gRPC LogsService and HTTP/protobuf, keeping raw payloads and records."""

from __future__ import annotations

import asyncio
import gzip
import socket
import threading
from concurrent import futures
from typing import Any

import grpc
from aiohttp import web
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in any_value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in any_value.kvlist_value.values}
    return getattr(any_value, kind) if kind else None


class Receiver:
    def __init__(self) -> None:
        self.payloads: list[bytes] = []
        self.records: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def take(self, request: logs_service_pb2.ExportLogsServiceRequest, raw: bytes) -> None:
        with self.lock:
            self.payloads.append(raw)
            for resource_logs in request.resource_logs:
                resource = {kv.key: _value(kv.value) for kv in resource_logs.resource.attributes}
                for scope_logs in resource_logs.scope_logs:
                    for record in scope_logs.log_records:
                        self.records.append({
                            "event_name": record.event_name, "severity_text": record.severity_text,
                            "body": _value(record.body),
                            "severity_number": record.severity_number, "time_unix_nano": record.time_unix_nano,
                            "attributes": {kv.key: _value(kv.value) for kv in record.attributes},
                            "resource": resource})


class GrpcReceiver(Receiver):
    def __init__(self, hang: bool = False) -> None:
        super().__init__()
        receiver = self

        class Servicer(logs_service_pb2_grpc.LogsServiceServicer):
            def Export(self, request, context):
                if hang:
                    threading.Event().wait(60)
                receiver.take(request, request.SerializeToString())
                return logs_service_pb2.ExportLogsServiceResponse()

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(Servicer(), self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def close(self) -> None:
        self.server.stop(0)


class HttpReceiver(Receiver):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        async def handler(request: web.Request) -> web.Response:
            raw = await request.read()
            if request.headers.get("Content-Encoding") == "gzip":
                raw = gzip.decompress(raw)
            message = logs_service_pb2.ExportLogsServiceRequest()
            message.ParseFromString(raw)
            self.take(message, raw)
            return web.Response(body=logs_service_pb2.ExportLogsServiceResponse().SerializeToString(),
                                content_type="application/x-protobuf")

        async def start() -> None:
            app = web.Application(client_max_size=64 * 1024 * 1024)
            app.router.add_post("/v1/logs", handler)
            self.runner = web.AppRunner(app, access_log=None)
            await self.runner.setup()
            site = web.TCPSite(self.runner, "127.0.0.1", 0)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(start())
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        ready.wait(10)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)


class HangingCollector:
    """Accepts connections and never answers: the worst collector."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(100)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


class GrpcMetricsReceiver:
    """A gRPC MetricsService keeping every data point by metric name."""

    def __init__(self) -> None:
        from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc

        self.points: dict[str, list[tuple[dict[str, Any], Any]]] = {}
        receiver = self

        class Servicer(metrics_service_pb2_grpc.MetricsServiceServicer):
            def Export(self, request, context):
                for resource_metrics in request.resource_metrics:
                    for scope in resource_metrics.scope_metrics:
                        for metric in scope.metrics:
                            kind = metric.WhichOneof("data")
                            for point in getattr(metric, kind).data_points:
                                attrs = {kv.key: _value(kv.value) for kv in point.attributes}
                                value = point.count if kind == "histogram" else (
                                    point.as_int if point.WhichOneof("value") == "as_int" else point.as_double)
                                receiver.points.setdefault(metric.name, []).append((attrs, value))
                return metrics_service_pb2.ExportMetricsServiceResponse()

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Servicer(), self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def close(self) -> None:
        self.server.stop(0)
