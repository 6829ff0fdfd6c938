import Foundation
import Logging
import NIOCore
import NIOPosix
import ParleyProtocol
import ParleyProtocolNIO
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The operator's Unix socket on a running server (`parley-server admin ...`): one request per
/// connection, answered and closed. Guarded by the file's mode (0600) and by the peer's uid.
final class AdminServer: Sendable {
    private let channel: Channel
    private let file: AdminSocketFile

    private init(channel: Channel, file: AdminSocketFile) {
        self.channel = channel
        self.file = file
    }

    /// Listens on `path` (see `AdminSocketFile` for stale files and the mode).
    static func start(path: String, group: EventLoopGroup, service: ChatService) async throws -> AdminServer {
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 16)
            .childChannelInitializer { child in
                child.eventLoop.makeCompletedFuture {
                    let sync = child.pipeline.syncOperations
                    try sync.addHandler(ByteToMessageHandler(FrameDecoder(maxFrameBytes: AdminProtocol.maxRequestBytes)))
                    try sync.addHandler(AdminHandler(service: service))
                }
            }
        let (channel, file) = try await AdminSocketFile.bind(bootstrap, path: path, group: group)
        service.logger.info("admin socket ready", metadata: ["path": "\(path)"])
        return AdminServer(channel: channel, file: file)
    }

    /// Stops listening and removes the socket file (if it is still this server's).
    func stop() async {
        try? await channel.close()
        file.remove()
    }
}

/// One admin connection: checks the peer, reads one line, carries it out, answers and closes.
final class AdminHandler: ChannelDuplexHandler {
    typealias InboundIn = Frame
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let service: ChatService
    private var permitted = false
    private var answered = false
    private var deadline: Scheduled<Void>?

    init(service: ChatService) {
        self.service = service
    }

    func channelActive(context: ChannelHandlerContext) {
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        peerUID(of: context.channel).whenSuccess { uid in
            let (handler, context) = loopBound.value
            handler.checked(peer: uid, context: context)
        }
        deadline = context.eventLoop.scheduleTask(in: .seconds(Int64(AdminProtocol.requestTimeout))) {
            let (handler, context) = loopBound.value
            handler.answer(.error(AdminError(.badRequest, "no request within \(Int(AdminProtocol.requestTimeout)) s")), context: context)
        }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        deadline?.cancel()
        context.fireChannelInactive()
    }

    private func checked(peer uid: UInt32?, context: ChannelHandlerContext) {
        guard AdminAccess.allows(peer: uid, server: getuid()) else {
            service.logger.warning("admin socket: connection refused", metadata: ["peer_uid": "\(uid.map(String.init) ?? "unknown")"])
            return answer(.error(AdminError(.permissionDenied, "only the server's user or root may use the admin socket")), context: context)
        }
        permitted = true
        context.read()
    }

    func read(context: ChannelHandlerContext) {
        // Nothing is read before the peer is checked, and nothing after the one request.
        if permitted, !answered { context.read() }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard permitted, !answered else { return }
        answered = true
        // The deadline is for the request line; carrying it out (a store write) may take longer.
        deadline?.cancel()
        deadline = nil
        let request: AdminRequest
        switch unwrapInboundIn(data) {
        case .tooLarge:
            return answer(.error(AdminError(.badRequest, "request longer than \(AdminProtocol.maxRequestBytes) bytes")), context: context)
        case .line(let bytes):
            guard let line = bytes.getString(at: bytes.readerIndex, length: bytes.readableBytes),
                line.utf8.elementsEqual(bytes.readableBytesView)
            else {
                return answer(.error(AdminError(.badRequest, "request is not UTF-8")), context: context)
            }
            do {
                request = try AdminRequest.parse(line)
            } catch {
                return answer(.error(error), context: context)
            }
        }
        service.logger.notice("admin request", metadata: ["request": "\(request.line)"])
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        AdminCommands(service: service, loop: context.eventLoop).run(request).whenComplete { result in
            let (handler, context) = loopBound.value
            switch result {
            case .success(let reply): handler.answer(reply, context: context)
            case .failure(let error): handler.answer(.error(AdminError(.internal, "\(error)")), context: context)
            }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }

    private func answer(_ reply: AdminReply, context: ChannelHandlerContext) {
        answered = true
        deadline?.cancel()
        deadline = nil
        guard context.channel.isActive else { return }
        var buffer = context.channel.allocator.buffer(capacity: 256)
        buffer.writeString(reply.encoded)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(buffer)).whenComplete { _ in channel.close(promise: nil) }
    }
}

/// What each admin request does to the running server.
struct AdminCommands {
    let service: ChatService
    let loop: EventLoop

    func run(_ request: AdminRequest) -> EventLoopFuture<AdminReply> {
        switch request {
        case .who: return who()
        case .kick(let name): return kick(Validation.canonicalUsername(name), shown: name)
        case .disable(let name): return disable(Validation.canonicalUsername(name), shown: name)
        case .reload: return loop.makeSucceededFuture(reload())
        }
    }

    private func who() -> EventLoopFuture<AdminReply> {
        let views = service.hub.allOnlineUsers().map { $0.operatorView() }
        return EventLoopFuture<OnlineSession?>.whenAllSucceed(views, on: loop).map { sessions in
            let online = sessions.compactMap { $0 }
            let summary = online.count == 1 ? "1 user online" : "\(online.count) users online"
            return .ok(summary, body: online.isEmpty ? [] : WhoTable.lines(online))
        }
    }

    private func kick(_ name: String, shown: String) -> EventLoopFuture<AdminReply> {
        logOut(name, reason: .kicked).map { done in
            done ? .ok("kicked \(shown)") : .error(AdminError(.notOnline, "\(shown) is not logged in"))
        }
    }

    private func disable(_ name: String, shown: String) -> EventLoopFuture<AdminReply> {
        let promise = loop.makePromise(of: Bool?.self)
        // Counted like a connection's store task, so the store does not close under it.
        let task = service.start(on: loop, { await $0.setDisabled(name, true) }) { outcome in
            promise.succeed(outcome ?? nil)
        }
        if task == nil { promise.succeed(nil) }
        return promise.futureResult.flatMap { disabled in
            switch disabled {
            case nil:
                return loop.makeSucceededFuture(.error(AdminError(.internal, "the store failed or the server is stopping")))
            case false?:
                return loop.makeSucceededFuture(.error(AdminError(.noSuchUser, "no account named \(shown)")))
            case true?:
                // After the store write: a login finishing now finds the account disabled itself.
                return logOut(name, reason: .disabled).map { wasOnline in
                    .ok(wasOnline ? "disabled \(shown) and logged them out" : "disabled \(shown) (not logged in)")
                }
            }
        }
    }

    private func reload() -> AdminReply {
        guard let action = service.configuration.adminReload else {
            return .error(AdminError(.unavailable, "this server has no reload action"))
        }
        action()
        return .ok("reload requested")
    }

    /// Ends the user's session if online; true if there was one.
    private func logOut(_ name: String, reason: EndReason) -> EventLoopFuture<Bool> {
        guard let onlineUser = service.hub.onlineUser(named: name) else { return loop.makeSucceededFuture(false) }
        return onlineUser.endByOperator(reason).hop(to: loop)
    }
}
