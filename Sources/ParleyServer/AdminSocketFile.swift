internal import CParleyShims
import Foundation
import NIOCore
import NIOPosix
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why the admin socket could not be set up.
public enum AdminSocketError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Another process listens on the path (most likely a server already running on this database).
    case inUse(String)
    /// Something other than a socket is at the path; it is never removed.
    case notASocket(String)
    /// The path does not fit in a Unix socket address (about 100 bytes).
    case pathTooLong(String)
    /// The bound socket is readable or writable by others (a file system that ignores the umask).
    case tooOpen(String, mode: UInt32)
    /// A system call failed.
    case system(String)

    public var description: String {
        switch self {
        case .inUse(let path): "admin socket \(path) is in use by another running server"
        case .notASocket(let path): "\(path) exists and is not a socket; remove it or choose another --admin-socket"
        case .pathTooLong(let path): "admin socket path is too long for a Unix socket: \(path)"
        case .tooOpen(let path, let mode): "admin socket \(path) has mode \(String(mode, radix: 8)), expected 600"
        case .system(let message): message
        }
    }
}

/// The admin socket's file: a stale one (from a crash) is replaced only when nobody listens on it,
/// the new one is created 0600 through the umask (never wider, even for a moment), and at shutdown
/// it is removed only if it is still the one this server made.
struct AdminSocketFile: Sendable {
    let path: String
    private let device: UInt64
    private let inode: UInt64

    /// Binds `bootstrap` to `path` after clearing a stale socket there.
    static func bind(_ bootstrap: ServerBootstrap, path: String, group: EventLoopGroup) async throws
        -> (Channel, AdminSocketFile)
    {
        guard path.utf8.count < MemoryLayout.size(ofValue: sockaddr_un().sun_path) else {
            throw AdminSocketError.pathTooLong(path)
        }
        try await removeIfStale(path, group: group)
        // The umask is the process's: while it is narrowed, other files this process creates get
        // at most 0600 too, which is stricter, never wider. Nothing else is created at this point.
        let previous = umask(0o177)
        let channel: Channel
        do {
            channel = try await bootstrap.bind(unixDomainSocketPath: path).get()
        } catch {
            umask(previous)
            if (error as? IOError)?.errnoCode == EADDRINUSE { throw AdminSocketError.inUse(path) }
            throw AdminSocketError.system("cannot bind admin socket \(path): \(error)")
        }
        umask(previous)
        var info = stat()
        guard lstat(path, &info) == 0 else {
            try? await channel.close()
            throw AdminSocketError.system("cannot stat admin socket \(path): \(String(cString: strerror(errno)))")
        }
        let mode = UInt32(info.st_mode) & 0o777
        guard mode & 0o077 == 0 else {
            try? await channel.close()
            unlink(path)
            throw AdminSocketError.tooOpen(path, mode: mode)
        }
        return (channel, AdminSocketFile(path: path, device: UInt64(info.st_dev), inode: UInt64(info.st_ino)))
    }

    /// A socket at `path` that accepts a connection belongs to a live server: refuse. One that
    /// refuses is left over from a crash: remove it. Anything else at the path is left alone.
    private static func removeIfStale(_ path: String, group: EventLoopGroup) async throws {
        var info = stat()
        guard lstat(path, &info) == 0 else {
            if errno == ENOENT { return }
            throw AdminSocketError.system("cannot stat \(path): \(String(cString: strerror(errno)))")
        }
        guard (info.st_mode & S_IFMT) == S_IFSOCK else { throw AdminSocketError.notASocket(path) }
        do {
            let probe = try await ClientBootstrap(group: group).connect(unixDomainSocketPath: path).get()
            try? await probe.close()
            throw AdminSocketError.inUse(path)
        } catch let error as AdminSocketError {
            throw error
        } catch {
            // Connection refused (or the file vanished): nobody listens.
        }
        guard unlink(path) == 0 || errno == ENOENT else {
            throw AdminSocketError.system("cannot remove stale admin socket \(path): \(String(cString: strerror(errno)))")
        }
    }

    /// Removes the socket file if it is still this server's (not one a later server put there).
    func remove() {
        var info = stat()
        guard lstat(path, &info) == 0, UInt64(info.st_dev) == device, UInt64(info.st_ino) == inode else { return }
        unlink(path)
    }
}

/// The uid of the process at the other end of a Unix socket channel (Linux SO_PEERCRED); nil if
/// it cannot be told, which the caller treats as a refusal.
func peerUID(of channel: Channel) -> EventLoopFuture<UInt32?> {
    let option = parley_SO_PEERCRED()
    guard option >= 0, let provider = channel as? SocketOptionProvider else {
        return channel.eventLoop.makeSucceededFuture(nil)
    }
    let credentials: EventLoopFuture<parley_ucred> = provider.unsafeGetSocketOption(
        level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(option))
    return credentials.map { Optional($0.uid) }.recover { _ in nil }
}
