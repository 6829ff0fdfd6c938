import NIOConcurrencyHelpers
import NIOCore
import ParleyProtocol
import ParleyProtocolNIO

/// Decides at accept, before any TLS work, whether a source address may open one more
/// connection; the one owner of the per-address counts (shared by every event loop, so behind one
/// lock). An admitted connection is released when its channel closes.
final class ConnectionLimiter: Sendable {
    /// The answer for one accepted socket.
    enum Admission: Equatable {
        /// Go on; `release(key)` when the channel closes (nil key: no address to count).
        case admitted(key: String?)
        case refused(ErrorCode)
    }

    private let table: NIOLockedValueBox<ConnectionTable>
    private let clock: @Sendable () -> NIODeadline

    init(limits: ServerLimits, clock: @escaping @Sendable () -> NIODeadline = { .now() }) {
        self.table = NIOLockedValueBox(ConnectionTable(limits: limits))
        self.clock = clock
    }

    func admit(_ address: SocketAddress?) -> Admission {
        // Keyed like the login back-off: IPv4 address, IPv6 /64 (one host holds a whole /64).
        guard let key = LoginAdmission.addressKey(address) else { return .admitted(key: nil) }
        let now = clock()
        switch table.withLockedValue({ $0.opened(key, now: now) }) {
        case .admitted: return .admitted(key: key)
        case .tooManyOpen: return .refused(.tooManyConnections)
        case .tooManyNew: return .refused(.tooManyNewConnections)
        }
    }

    func release(_ key: String) {
        table.withLockedValue { $0.closed(key) }
    }

    /// New limits (a reload); open connections stay counted.
    func update(_ limits: ServerLimits) {
        table.withLockedValue { $0.update(limits) }
    }

    /// Connections counted open for the address of `address` (tests).
    func openCount(_ address: SocketAddress) -> Int {
        guard let key = LoginAdmission.addressKey(address) else { return 0 }
        return table.withLockedValue { $0.openCount(key) }
    }
}

/// The whole pipeline of a refused connection: one plaintext `error` frame, then close. No TLS
/// (the point is to spend nothing on it); the client recognises the frame because no TLS record
/// starts with `{`, and shows only the code's own words, as nothing here is authenticated.
///
/// The write is followed by a half-close, and what the client sent (its ClientHello) is read and
/// dropped until it closes or `linger` passes: closing with unread input would send a reset,
/// which can destroy the notice before the client reads it.
final class RefusedConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    static let linger = TimeAmount.seconds(1)
    private let notice: ByteBuffer
    private var deadline: Scheduled<Void>?

    init(code: ErrorCode) {
        self.notice = ServerMessage.error(code: code, message: code.defaultMessage).frame()
    }

    func channelActive(context: ChannelHandlerContext) {
        context.writeAndFlush(wrapOutboundOut(notice)).assumeIsolated().whenComplete { _ in
            context.close(mode: .output, promise: nil)
        }
        deadline = context.eventLoop.assumeIsolated().scheduleTask(in: Self.linger) { context.close(promise: nil) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        deadline?.cancel()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}
