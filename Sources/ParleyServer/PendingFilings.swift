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
/// by `ChatService`; answered by `ClusterReceiver`, or by a timer on the requester's loop. A
/// token is expected before its relay goes out, so an answer that beats the waiter is kept.
final class PendingFilings: Sendable {
    private enum Slot {
        case expected
        case waiting(CheckedContinuation<FilingAnswer, Never>)
        case answered(FilingAnswer)
    }

    private let slots = NIOLockedValueBox<[UInt64: Slot]>([:])

    /// Call before relaying request `token`.
    func expect(_ token: UInt64) {
        slots.withLockedValue { $0[token] = .expected }
    }

    /// Waits for the answer to request `token`, at most `timeout` (a timer on `loop`).
    func wait(token: UInt64, timeout: TimeAmount, on loop: EventLoop) async -> FilingAnswer {
        await withCheckedContinuation { continuation in
            let early = slots.withLockedValue { s -> FilingAnswer? in
                if case .answered(let answer)? = s[token] {
                    s[token] = nil
                    return answer
                }
                s[token] = .waiting(continuation)
                return nil
            }
            if let early { return continuation.resume(returning: early) }
            loop.scheduleTask(in: timeout) { self.answer(token, .noAnswer) }
        }
    }

    /// Drops an expected token nobody will wait for (the server is stopping).
    func forget(_ token: UInt64) {
        slots.withLockedValue { _ = $0.removeValue(forKey: token) }
    }

    /// Resumes the waiter of `token`, or keeps the answer for it. False when nobody expects it
    /// any more (late, repeated or unknown): the caller undoes what a late refusal leaves behind.
    @discardableResult
    func answer(_ token: UInt64, _ answer: FilingAnswer) -> Bool {
        let (continuation, expected) = slots.withLockedValue { s -> (CheckedContinuation<FilingAnswer, Never>?, Bool) in
            switch s[token] {
            case .waiting(let continuation)?:
                s[token] = nil
                return (continuation, true)
            case .expected?:
                s[token] = .answered(answer)
                return (nil, true)
            case .answered?, nil:
                return (nil, false)
            }
        }
        continuation?.resume(returning: answer)
        return expected
    }
}
