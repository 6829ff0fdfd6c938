import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import ParleyCrypto
import ParleyProtocol
import ParleyStore

/// The commands that need the store or the password hasher. Connection handlers call these from a
/// task and apply the outcome back on their event loop; nothing here touches a channel.
struct ChatService: Sendable {
    let store: any ChatStore
    let passwords: PasswordService
    let hub: Hub
    let configuration: ServerConfiguration
    let logger: Logger
    /// Which logins may check a password now (one per name, none from an address in back-off).
    let admission: LoginAdmission
    /// Pending private requests and set-up pairs (see `PrivateSessions`).
    let privateSessions = PrivateSessions()
    /// Tasks under way off the event loops (see `InFlightWork`).
    let work = InFlightWork()
    /// Connection handlers alive: each adds itself at init and removes itself at deinit.
    let handlers = NIOLockedValueBox(0)
    /// Returns heap freed by connection churn to the system (see `MemoryReleaser`).
    let memory = MemoryReleaser()

    /// A connection handler was created.
    func connectionOpened() {
        handlers.withLockedValue { $0 += 1 }
        memory.connectionChurned()
    }

    /// A connection handler was freed.
    func connectionFreed() {
        handlers.withLockedValue { $0 -= 1 }
        memory.connectionChurned()
    }

    /// What a successful password check hands to the connection.
    struct Authenticated: Sendable {
        let name: String
        let displayName: String
        let created: Bool
        let blocks: Set<String>
        let blockedBy: Set<String>
    }

    /// Stores a message for a user who is not online.
    func storeOffline(to recipient: String, from sender: String, text: String) async -> ProtocolError? {
        do {
            _ = try await store.enqueueOfflineMessage(to: recipient, from: sender, text: text, sentAt: Date())
            return nil
        } catch StoreError.unknownAccount {
            return ProtocolError(.unknownUser)
        } catch {
            logger.error("storing offline message failed: \(error)")
            return ProtocolError(.internal)
        }
    }

    /// Blocks or unblocks, durably first, then in the online view.
    func setBlock(blocker: String, blocked: String, active: Bool) async -> ProtocolError? {
        do {
            let changed =
                active
                ? try await store.block(blocker: blocker, blocked: blocked)
                : try await store.unblock(blocker: blocker, blocked: blocked)
            guard changed else {
                if !active, try await store.account(named: blocked) == nil { return ProtocolError(.unknownUser) }
                return ProtocolError(active ? .alreadyBlocked : .notBlocked)
            }
            hub.noteBlock(blocker: blocker, blocked: blocked, active: active)
            return nil
        } catch StoreError.unknownAccount {
            return ProtocolError(.unknownUser)
        } catch {
            logger.error("block change failed: \(error)")
            return ProtocolError(.internal)
        }
    }

    /// Whether an account exists (for errors that must name unknown users).
    func accountExists(_ name: String) async -> Bool {
        (try? await store.account(named: name)) != nil
    }

    /// Users online now or within the last `seconds`, as seen by `viewer`.
    func usersActive(withinLast seconds: Int64, viewer: String) async -> Result<[String], ProtocolError> {
        do {
            let since = Date(timeIntervalSinceNow: -Double(min(seconds, 10 * 365 * 86_400)))
            let recent = try await store.usersActive(since: since)
            let hidden = hub.blockers(of: viewer)
            var names = Set(hub.onlineNames(visibleTo: viewer))
            let onlineCanonical = hub.onlineCanonicalNames()
            for name in recent where name != viewer && !hidden.contains(name) && !onlineCanonical.contains(name) {
                names.insert(try await store.account(named: name)?.displayName ?? name)
            }
            return .success(names.sorted())
        } catch {
            logger.error("whoelsesince failed: \(error)")
            return .failure(ProtocolError(.internal))
        }
    }
}

extension TimeAmount {
    var seconds: TimeInterval { TimeInterval(nanoseconds) / 1_000_000_000 }
}
