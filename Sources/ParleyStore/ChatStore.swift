import Foundation

/// Durable state the server needs, independent of the database behind it (SQLite now, PostgreSQL
/// later). Names are canonical names; the server canonicalises before calling. Every method is
/// safe to call concurrently, and every check-and-change is atomic in the backend.
public protocol ChatStore: Sendable {
    // MARK: Accounts

    /// Creates an account; returns false if the name is taken. Atomic: of two concurrent
    /// registrations of one name exactly one returns true.
    func createAccount(name: String, displayName: String, passwordHash: String) async throws -> Bool
    /// The account with this canonical name, if any.
    func account(named name: String) async throws -> Account?
    /// Replaces the stored hash (rehash on login, password change); false if no such account.
    @discardableResult
    func updatePasswordHash(name: String, passwordHash: String) async throws -> Bool
    /// All accounts, ordered by name.
    func listAccounts() async throws -> [Account]
    /// Disables (refused at login) or enables an account; false if no such account.
    @discardableResult
    func setDisabled(name: String, disabled: Bool) async throws -> Bool
    /// Deletes an account with, in the same transaction, the messages queued for it, blocks in
    /// both directions and its login history; false if no such account. Messages it sent to
    /// others stay queued (their `sender` is a name, not a reference).
    @discardableResult
    func deleteAccount(name: String) async throws -> Bool

    // MARK: Lockout

    /// Atomically counts a failed login. When the count reaches `threshold` (>= 1), the account is
    /// locked until `now + lockDuration` and the counter resets. Does not look at an existing lock:
    /// the server refuses locked accounts before checking passwords.
    func recordFailedLogin(name: String, now: Date, threshold: Int, lockDuration: TimeInterval) async throws
        -> FailedLoginOutcome
    /// Atomically claims one password check for `name`, before any hashing: refused (`.locked`) when
    /// the account is locked at `now`, otherwise counted as a failure up front. The claim that brings
    /// the count to `threshold` also locks the account until `now + lockDuration`, so no further
    /// claim (from any server sharing the database) can start while that check runs. Settle every
    /// claim with `settleLoginAttempt`.
    func claimLoginAttempt(name: String, now: Date, threshold: Int, lockDuration: TimeInterval) async throws
        -> LoginAttemptClaim
    /// Finishes a claimed check: a success clears the counter (and the claim's own lock); a failure
    /// at the threshold restarts the lock at `now`; an abandoned check (never compared) is uncounted.
    func settleLoginAttempt(name: String, attempt: Int, threshold: Int, outcome: LoginAttemptOutcome, now: Date,
                            lockDuration: TimeInterval) async throws
    /// Clears the failure counter (after a successful login); false if no such account.
    @discardableResult
    func resetFailedLogins(name: String) async throws -> Bool
    /// Clears both the lock and the counter (operator action); false if no such account.
    @discardableResult
    func unlock(name: String) async throws -> Bool

    // MARK: Blocks

    /// Records that `blocker` blocks `blocked`; false if it already did. Throws
    /// `StoreError.unknownAccount` if either account does not exist.
    func block(blocker: String, blocked: String) async throws -> Bool
    /// Removes a block; false if there was none.
    func unblock(blocker: String, blocked: String) async throws -> Bool
    /// Everyone `blocker` blocks.
    func blockedUsers(by blocker: String) async throws -> Set<String>
    /// Everyone who blocks `blocked`.
    func usersBlocking(_ blocked: String) async throws -> Set<String>
    /// Whether `blocker` blocks `blocked`.
    func isBlocked(blocker: String, blocked: String) async throws -> Bool

    // MARK: Offline messages

    /// Queues a message for an offline recipient and returns its delivery id. Throws
    /// `StoreError.unknownAccount` if the recipient does not exist.
    func enqueueOfflineMessage(to recipient: String, from sender: String, text: String, sentAt: Date)
        async throws -> Int64
    /// Up to `limit` queued messages for `recipient` with id greater than `afterID`, oldest first.
    /// Nothing is removed until acknowledged.
    func pendingMessages(for recipient: String, after afterID: Int64, limit: Int) async throws -> [StoredMessage]
    /// Queues a message unless `recipient` already has `quota` or more queued: the check and the
    /// insert are one statement, so concurrent senders cannot pass the quota. Returns the delivery
    /// id, or nil when the queue is full. Throws `StoreError.unknownAccount` like the plain enqueue.
    func enqueueOfflineMessage(to recipient: String, from sender: String, text: String, sentAt: Date, quota: Int)
        async throws -> Int64?
    /// How many messages are queued for `recipient` (for per-recipient quotas).
    func pendingMessageCount(for recipient: String) async throws -> Int
    /// How many messages are queued for everyone (the metrics' starting queue depth).
    func pendingMessageTotal() async throws -> Int
    /// Deletes the message with this id if it belongs to `recipient`. Idempotent; returns whether
    /// this call deleted it.
    @discardableResult
    func acknowledge(delivery id: Int64, for recipient: String) async throws -> Bool

    // MARK: Login history

    /// Opens a session record for `name`.
    func recordLogin(name: String, at time: Date) async throws
    /// Closes the newest open session of `name`; false if it had none open.
    @discardableResult
    func recordLogout(name: String, at time: Date) async throws -> Bool
    /// Users with a session overlapping [since, now]: logged in at or after `since`, logged out at
    /// or after `since`, or still open.
    func usersActive(since: Date) async throws -> Set<String>
    /// Closes every session still open (left by a crash); call once at server start, before
    /// accepting connections. Returns how many were closed.
    @discardableResult
    func closeOpenLogins(at time: Date) async throws -> Int

    // MARK: Lifecycle

    /// Releases the database. Call after every other use has finished.
    func close() async throws
}

extension ChatStore {
    /// The oldest `limit` queued messages for `recipient`.
    public func pendingMessages(for recipient: String, limit: Int) async throws -> [StoredMessage] {
        try await pendingMessages(for: recipient, after: 0, limit: limit)
    }
}
