import Foundation

/// Tells systemd (Type=notify) where the server is in its life, over the datagram socket named
/// by $NOTIFY_SOCKET (a path, or an abstract name starting with '@'). Without it, does nothing.
struct SystemdNotifier: Sendable {
    enum State: Sendable {
        case ready(status: String)
        /// systemd >= 253 wants the monotonic time with RELOADING=1 to tell reloads apart.
        case reloading
        case stopping

        var message: String {
            switch self {
            case .ready(let status): "READY=1\nSTATUS=\(status)"
            case .reloading: "RELOADING=1\nMONOTONIC_USEC=\(Self.monotonicMicroseconds())\nSTATUS=reloading"
            case .stopping: "STOPPING=1\nSTATUS=draining"
            }
        }

        private static func monotonicMicroseconds() -> UInt64 {
            var now = timespec()
            clock_gettime(CLOCK_MONOTONIC, &now)
            return UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1_000
        }
    }

    private let socketName: String?

    init(environment: [String: String]) {
        socketName = environment["NOTIFY_SOCKET"].flatMap { $0.isEmpty ? nil : $0 }
    }

    /// Sends one state; a failure is returned for the caller to log (systemd then times out on us).
    @discardableResult
    func notify(_ state: State) -> String? {
        guard let socketName else { return nil }
        var name = Array(socketName.utf8)
        if name.first == UInt8(ascii: "@") { name[0] = 0 }  // abstract namespace
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard name.count < capacity else { return "NOTIFY_SOCKET name too long" }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: name) }
        let length = socklen_t(MemoryLayout<sockaddr_un>.offset(of: \.sun_path)! + name.count + (name.first == 0 ? 0 : 1))
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return "socket: \(String(cString: strerror(errno)))" }
        defer { close(fd) }
        let message = Array(state.message.utf8)
        let sent = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, message, message.count, 0, $0, length) }
        }
        return sent == message.count ? nil : "sendto \(socketName): \(String(cString: strerror(errno)))"
    }
}
