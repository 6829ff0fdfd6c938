#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import ArgumentParser
import Dispatch
import Foundation
import Histogram
import NIOCore
import NIOPosix
import ParleyTLS

struct Offline: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "M messages stored for an offline user, then that user logs in: time to receive (and ack) them all.")
    @OptionGroup var common: Common
    @Option(name: .shortAndLong, help: "Stored messages.") var messages = 1000
    @Option(help: "Requests in flight while storing.") var window = 64

    func run() throws {
        let r = try Run("offline", common, hardLimit: 3 * common.loginTimeout + 60)
        let e = r.engine
        let rep = r.report
        rep.add("messages", messages)
        let runID = String(UInt64(time(nil)) % 1_000_000, radix: 36) + String(getpid() % 1000, radix: 36)
        let recipientName = "\(common.userPrefix)off\(runID)"
        func recipient() -> BenchClient {
            let c = BenchClient(index: 1, name: recipientName, password: common.password(1), mode: .login)
            c.ackStored = true
            return c
        }
        // 1. The recipient registers, then leaves.
        let first = recipient()
        guard r.loginAll([first], key: "recipient_register") else { r.finish(ok: false) }
        e.onLoop { first.write("{\"type\":\"logout\"}\n") }
        guard waitUntil(e, timeout: 5, { first.channel?.isActive == false }) else {
            rep.add("error", "recipient did not get logged out")
            r.finish(ok: false)
        }
        // 2. The sender stores M messages (each gets a reply once stored).
        let sender = r.clients(0..<1)[0]
        guard r.loginAll([sender], key: "sender_login") else { r.finish(ok: false) }
        let t0 = nowNs()
        let win = max(1, window)
        let count = messages
        e.onLoop { sender.makeSender(slot: 0, to: recipientName) }
        let stored = waitUntil(e, timeout: common.loginTimeout) {
            // Keep `win` requests outstanding.
            while Int(sender.seq) < count && Int(sender.seq) - (sender.repliesOK + sender.repliesError) < win {
                sender.send(ts: nowNs(), padding: 0)
            }
            return sender.repliesOK + sender.repliesError >= count
        }
        let storeWall = Double(nowNs() - t0) / 1e9
        let errors = e.onLoop { sender.repliesError }
        rep.add("store_wall_s", storeWall, 3)
        rep.add("store_per_s", Double(messages) / storeWall, 0)
        rep.add("store_errors", errors)
        guard stored, errors == 0 else {
            rep.add("error", "storing failed: \(e.onLoop { e.firstProblem } ?? "timeout")")
            r.finish(ok: false)
        }
        _ = try? e.onLoop { e.closeAll([sender]) }.wait()
        // 3. The recipient logs in; time to the last stored message (each acked on arrival).
        let rc = recipient()
        let loginStart = nowNs()
        guard r.loginAll([rc], key: "recipient_login") else { r.finish(ok: false) }
        let all = waitUntil(e, timeout: common.loginTimeout) { rc.storedReceived >= count }
        sleepSeconds(0.2)  // anything extra (duplicates) shows up here
        let (received, dup, ooo, lastNs, okNs, nextSeq) = e.onLoop {
            (rc.storedReceived, rc.storedDup, rc.storedOutOfOrder, rc.storedLastNs, rc.loginOkNs, rc.storedNextSeq)
        }
        rep.add("received", received)
        rep.add("complete", all)
        rep.add("in_order", ooo == 0)
        rep.add("dup", dup)
        rep.add("out_of_order", ooo)
        rep.add("missing", messages - Int(min(UInt64(messages), nextSeq)) + ooo)
        if lastNs > 0 {
            rep.add("login_to_last_ms", Double(lastNs - loginStart) / 1e6, 1)
            rep.add("login_reply_to_last_ms", Double(lastNs - okNs) / 1e6, 1)
            rep.add("stored_per_s", Double(received) / (Double(lastNs - okNs) / 1e9), 0)
        }
        // 4. Logout (the server waits for the acks), then log in again: nothing may be left.
        e.onLoop { rc.write("{\"type\":\"logout\"}\n") }
        _ = waitUntil(e, timeout: 5) { rc.channel?.isActive == false }
        let again = recipient()
        if r.loginAll([again], key: "recipient_relogin") {
            sleepSeconds(0.5)
            let left = e.onLoop { again.storedReceived }
            rep.add("left_after_acks", left)
            _ = try? e.onLoop { e.closeAll([again]) }.wait()
            r.finish(ok: all && dup == 0 && ooo == 0 && left == 0)
        }
        r.finish(ok: false)
    }
}
