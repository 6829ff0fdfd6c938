import Logging
import NIOCore

extension TLSHandler {
    /// What every connection made with the same options shares: one object for all of a server's
    /// connections, instead of a copy of each field (and of the logger) per connection.
    public final class Settings: Sendable {
        let tlsContext: TLSContext
        let serverHostname: String?
        let pinnedFingerprint: [UInt8]?
        public let handshakeTimeout: TimeAmount
        let closeNotifyTimeout: TimeAmount
        let logger: Logger?
        /// Called (on the connection's loop) when a handshake fails, e.g. to count it by reason.
        public let handshakeFailed: (@Sendable (TLSError) -> Void)?

        /// See `TLSHandler.init(context:serverHostname:pinnedFingerprint:handshakeTimeout:closeNotifyTimeout:logger:)`;
        /// `handshakeFailed` hears of every handshake that did not complete.
        public init(
            context: TLSContext,
            serverHostname: String? = nil,
            pinnedFingerprint: [UInt8]? = nil,
            handshakeTimeout: TimeAmount = .seconds(10),
            closeNotifyTimeout: TimeAmount = .seconds(2),
            logger: Logger? = nil,
            handshakeFailed: (@Sendable (TLSError) -> Void)? = nil
        ) {
            self.handshakeFailed = handshakeFailed
            self.tlsContext = context
            self.serverHostname = serverHostname
            self.pinnedFingerprint = pinnedFingerprint
            self.handshakeTimeout = handshakeTimeout
            self.closeNotifyTimeout = closeNotifyTimeout
            self.logger = logger
        }
    }
}
