import NIOConcurrencyHelpers
import NIOCore
import ParleyProtocol

/// What the target's node said about a `startprivate` relayed to it: the requester's reply
/// waits for this, so a refusal there is the same error as on one node.
enum FilingAnswer: Equatable, Sendable {
    /// Filed: the target has been asked.
    case filed
    /// Refused there, with the error the requester gets.
    case refused(ErrorCode, String)
    /// No answer in time (a node of an older version, or one that died): taken as filed; the
    /// request then ends like any unanswered one.
    case noAnswer
}

/// Requests relayed to another node and waiting for its filing answer, by request token. Owned
/// by `ChatService`; answered by `ClusterReceiver`, or by a timer on the requester's loop.
final class PendingFilings: Sendable {
    private let waiting = NIOLockedValueBox<[UInt64: CheckedContinuation<FilingAnswer, Never>]>([:])

    /// Waits for the answer to request `token`, at most `timeout` (a timer on `loop`).
    func wait(token: UInt64, timeout: TimeAmount, on loop: EventLoop) async -> FilingAnswer {
        await withCheckedContinuation { continuation in
            waiting.withLockedValue { $0[token] = continuation }
            loop.scheduleTask(in: timeout) { self.answer(token, .noAnswer) }
        }
    }

    /// Resumes the waiter of `token`, if any (a late or repeated answer is ignored).
    func answer(_ token: UInt64, _ answer: FilingAnswer) {
        let continuation = waiting.withLockedValue { $0.removeValue(forKey: token) }
        continuation?.resume(returning: answer)
    }
}
