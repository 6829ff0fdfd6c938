import Logging
import NIOCore

extension TLSHandler {
    /// What every connection made with the same options shares: one object for all of a server's
    /// connections, instead of a copy of each field (and of the logger) per connection.
    public final class Settings: Sendable {
        let tlsContext: TLSContext
        let serverHostname: String?
        let pinnedFingerprint: [UInt8]?
        let handshakeTimeout: TimeAmount
        let closeNotifyTimeout: TimeAmount
        let logger: Logger?

        /// See `TLSHandler.init(context:serverHostname:pinnedFingerprint:handshakeTimeout:closeNotifyTimeout:logger:)`.
        public init(
            context: TLSContext,
            serverHostname: String? = nil,
            pinnedFingerprint: [UInt8]? = nil,
            handshakeTimeout: TimeAmount = .seconds(10),
            closeNotifyTimeout: TimeAmount = .seconds(2),
            logger: Logger? = nil
        ) {
            self.tlsContext = context
            self.serverHostname = serverHostname
            self.pinnedFingerprint = pinnedFingerprint
            self.handshakeTimeout = handshakeTimeout
            self.closeNotifyTimeout = closeNotifyTimeout
            self.logger = logger
        }
    }
}
