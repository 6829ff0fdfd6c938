import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus

/// The `--metrics-listen` endpoint: plain HTTP/1.1 on its own listener, `GET /metrics` answered
/// with the Prometheus text format, anything else refused; one request per connection.
enum MetricsListener {
    /// Binds the listener on `group`; close the returned channel to stop it.
    static func start(at address: MetricsAddress, group: EventLoopGroup, registry: PrometheusCollectorRegistry) async throws
        -> Channel
    {
        try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { child in
                child.eventLoop.makeCompletedFuture {
                    // llhttp bounds the request head (80 KiB); the handler refuses any body.
                    try child.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try child.pipeline.syncOperations.addHandler(MetricsHTTPHandler(registry: registry))
                }
            }
            .bind(host: address.host, port: address.port).get()
    }
}

/// Answers one request: 200 with the metrics for `GET /metrics`, 404 for another path, 405 for
/// another method, 413 for a request with a body; then closes. A connection that sends nothing
/// is closed after `idleTimeout`.
final class MetricsHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    static let idleTimeout = TimeAmount.seconds(10)
    private let registry: PrometheusCollectorRegistry
    private var status: HTTPResponseStatus?
    private var version = HTTPVersion.http1_1
    private var answered = false
    private var idle: Scheduled<Void>?

    init(registry: PrometheusCollectorRegistry) {
        self.registry = registry
    }

    func handlerAdded(context: ChannelHandlerContext) {
        idle = context.eventLoop.assumeIsolated().scheduleTask(in: Self.idleTimeout) { context.close(promise: nil) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        idle?.cancel()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !answered else { return }
        switch unwrapInboundIn(data) {
        case .head(let head):
            version = head.version
            let path = head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            if path != "/metrics" {
                status = .notFound
            } else if head.method != .GET {
                status = .methodNotAllowed
            } else {
                status = .ok
            }
        case .body:
            // GET carries no body; anything sent is refused rather than buffered.
            respond(context, .payloadTooLarge)
        case .end:
            respond(context, status ?? .badRequest)
        }
    }

    private func respond(_ context: ChannelHandlerContext, _ status: HTTPResponseStatus) {
        answered = true
        var body = context.channel.allocator.buffer(capacity: status == .ok ? 4096 : 32)
        var headers = HTTPHeaders()
        if status == .ok {
            var bytes: [UInt8] = []
            registry.emit(into: &bytes)
            body.writeBytes(bytes)
            headers.add(name: "Content-Type", value: "text/plain; version=0.0.4; charset=utf-8")
        } else {
            body.writeString("\(status.code) \(status.reasonPhrase)\n")
            headers.add(name: "Content-Type", value: "text/plain; charset=utf-8")
            if status == .methodNotAllowed { headers.add(name: "Allow", value: "GET") }
        }
        headers.add(name: "Content-Length", value: "\(body.readableBytes)")
        headers.add(name: "Connection", value: "close")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: version, status: status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
            context.close(promise: nil)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}
