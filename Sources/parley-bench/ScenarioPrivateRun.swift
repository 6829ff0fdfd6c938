#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Histogram
import NIOConcurrencyHelpers
import NIOCore
import ParleyClient
import ParleyCrypto
import ParleyProtocol
import ParleyProtocolNIO
import ParleyTLS

/// One `parley-bench private` run (a task; the main thread waits for it).
struct PrivateBench: @unchecked Sendable {
    let run: Run
    let options: PrivateOptions

    private var rep: Report { run.report }

    func fail(_ why: String) -> Bool {
        rep.add("error", why)
        return false
    }

    func run() async -> Bool {
        let c = run.common
        let o = options
        rep.add("rate_msg_s", o.rate, 0)
        rep.add("warmup_s", o.warmup, 1)
        rep.add("duration_s", o.duration, 1)
        rep.add("active_to_server", o.active)
        let runID = String(UInt64(time(nil)) % 1_000_000, radix: 36) + String(getpid() % 1000, radix: 36)
        let nameA = "\(c.userPrefix)pa\(runID)", nameB = "\(c.userPrefix)pb\(runID)"
        rep.add("users", "\(nameA) -> \(nameB)")

        // 1. Both users connect and log in (registered at first login).
        let s0 = run.server()
        let t0 = nowNs()
        let a: ChatConnection, b: ChatConnection
        do {
            a = try await ChatConnection.connect(
                host: c.host, port: c.port, tlsContext: run.engine.tls, serverHostname: c.serverName, group: run.engine.group)
            b = try await ChatConnection.connect(
                host: c.host, port: c.port, tlsContext: run.engine.tls, serverHostname: c.serverName, group: run.engine.group)
            for (conn, name, i) in [(a, nameA, 0), (b, nameB, 1)] {
                let result = try await conn.login(username: name, password: c.password(i), timeout: .seconds(Int64(c.loginTimeout)))
                guard case .loggedIn = result else { return fail("login of \(name) refused: \(result)") }
            }
        } catch {
            return fail("connect/login: \(error)")
        }
        let tLogin = nowNs()
        let mailA = Mailbox(a), mailB = Mailbox(b)

        // 2. The introduction through the server, exactly as the client's state machine does it.
        let idA: TLSIdentity, idB: TLSIdentity
        do {
            idA = try CertificateFactory.make(commonName: "parley private", kind: .peer, notAfter: 3600)
            idB = try CertificateFactory.make(commonName: "parley private", kind: .peer, notAfter: 3600)
        } catch {
            return fail("peer identities: \(error)")
        }
        let tStart = nowNs()
        guard let r1 = try? await a.send(.startPrivate(user: nameB, fingerprint: Hex.encode(idA.fingerprint)), timeout: .seconds(10)),
            case .ok = r1.outcome
        else { return fail("startprivate refused or unanswered") }
        let tStartReply = nowNs()
        guard let (tRequest, _) = await mailB.take(timeout: 10, { if case .privateRequest = $0 { true } else { false } }) else {
            return fail("\(nameB) got no privaterequest")
        }
        let accepted = NIOLockedValueBox<(PrivateLink, UInt64)?>(nil)
        let listener: PrivateListener
        do {
            listener = try await PrivateListener.open(
                identity: idB, host: b.localHost ?? "127.0.0.1", group: run.engine.group
            ) { link in accepted.withLockedValue { $0 = (link, nowNs()) } }
        } catch {
            return fail("listener: \(error)")
        }
        defer { listener.close() }
        let answer = Request.privateAnswer(user: nameA, accept: true, port: UInt16(listener.port), fingerprint: Hex.encode(idB.fingerprint))
        guard let r2 = try? await b.send(answer, timeout: .seconds(10)), case .ok = r2.outcome else {
            return fail("privateanswer refused or unanswered")
        }
        guard let (_, started) = await mailB.take(timeout: 10, { if case .privateStarted = $0 { true } else { false } }),
            case .privateStarted(_, let fpA, let linkIDForB) = started, let pinA = Hex.decode(fpA)
        else { return fail("\(nameB) got no privatestarted") }
        listener.expect(PrivatePeerExpectation(fingerprint: pinA, linkID: linkIDForB))
        guard let (tAccepted, acc) = await mailA.take(timeout: 10, { if case .privateAccepted = $0 { true } else { false } }),
            case .privateAccepted(_, let host, let port, let fpB, let linkID) = acc, let pinB = Hex.decode(fpB)
        else { return fail("\(nameA) got no privateaccepted") }
        let tConnect = nowNs()
        let linkA: PrivateLink
        do {
            linkA = try await PrivateLink.connect(
                host: host, port: Int(port), identity: idA, expecting: PrivatePeerExpectation(fingerprint: pinB, linkID: linkID),
                group: run.engine.group)
        } catch {
            return fail("direct link \(host):\(port): \(error)")
        }
        let tLinkA = nowNs()
        var linkB: PrivateLink?
        for _ in 0..<1000 where linkB == nil {
            linkB = accepted.withLockedValue { $0?.0 }
            if linkB == nil { try? await Task.sleep(nanoseconds: 1_000_000) }
        }
        guard let linkB else { return fail("the accepting side never opened the link") }
        listener.close()  // one link per id, as the client does
        let s1 = run.server()
        let pinsOK = linkA.peerFingerprint == idB.fingerprint && linkB.peerFingerprint == idA.fingerprint
        let codesMatch = linkA.safetyCode == linkB.safetyCode && linkA.safetyCode != "------"
        rep.add("setup_ms", .object([
            ("login_both", ms(t0, tLogin)),
            ("startprivate_reply", ms(tStart, tStartReply)),
            ("privaterequest_seen", ms(tStart, tRequest)),
            ("privateaccepted_seen", ms(tStart, tAccepted)),
            ("link_open", ms(tConnect, tLinkA)),
            ("startprivate_to_link_open", ms(tStart, tLinkA)),
        ]))
        rep.add("peer_host", "\(host):\(port)")
        rep.add("pins_verified", pinsOK)
        rep.add("safety_codes_match", codesMatch)
        if let s0, let s1 { rep.add("server_cpu_s_setup", s1.cpuSeconds - s0.cpuSeconds, 2) }

        let receiver = PeerReceiver()
        let reading = Task { await receiver.consume(linkB) }

        // 3. Latency: timed messages at a fixed rate; ts = intended send time (no coordinated omission).
        let lat = await latencyPhase(linkA, a, receiver)
        // 4. Throughput: open loop, at most `window` unread messages.
        let thr = o.throughputDuration > 0 ? await throughputPhase(linkA, a, receiver) : (ok: true, lost: 0, dup: 0, gaps: 0, unique: 0)

        let lost = lat.lost + thr.lost, dup = lat.dup + thr.dup
        rep.add("deliveries", lat.unique + thr.unique)
        rep.add("lost", lost)
        rep.add("dup", dup)
        rep.add("gaps", lat.gaps + thr.gaps)
        let problems = receiver.problems
        rep.add("malformed", problems.malformed)
        rep.add("link_closed_early", problems.isClosed)

        // 5. Close the link (bye + close_notify), then tell the server, as `stopprivate` does.
        await linkA.close(reason: "\(nameA) stopped private messaging")
        _ = await reading.value
        _ = try? await a.send(.stopPrivate(user: nameB), timeout: .seconds(5))
        _ = await mailB.take(timeout: 2, { if case .privateStopped = $0 { true } else { false } })
        rep.add("bye_seen", receiver.problems.bye != nil)
        run.addServer("server_after", run.server())
        await a.close()
        await b.close()
        return pinsOK && codesMatch && lat.ok && thr.ok && lost == 0 && dup == 0 && problems.malformed == 0 && !problems.isClosed
    }

    private func send(_ link: PrivateLink, _ a: ChatConnection, _ text: String) async -> Bool {
        do { try await link.send(text) } catch { return false }
        if options.active { try? await a.sendWithoutReply(.active) }
        return true
    }

    typealias PhaseResult = (ok: Bool, lost: UInt64, dup: UInt64, gaps: UInt64, unique: UInt64)

    private func latencyPhase(_ link: PrivateLink, _ a: ChatConnection, _ receiver: PeerReceiver) async -> PhaseResult {
        let o = options
        let start = nowNs() + 5_000_000
        let measureStart = start + UInt64(o.warmup * 1e9)
        let end = measureStart + UInt64(o.duration * 1e9)
        receiver.setWindow(measureStart, end)
        var seq: UInt64 = 0
        var sendFailed = false
        var s1: ProcSample?
        var b1 = 0.0
        var sampled = false
        while true {
            let intended = start + UInt64(Double(seq) * 1e9 / o.rate)
            guard intended < end else { break }
            if !sampled, intended >= measureStart {
                sampled = true
                s1 = run.server()
                b1 = ProcSample.selfCPU()
            }
            let now = nowNs()
            if intended > now { try? await Task.sleep(nanoseconds: intended - now) }
            guard await send(link, a, timedText(slot: 0, seq: seq, ts: intended, padding: o.padding)) else {
                sendFailed = true
                break
            }
            seq += 1
        }
        sleepUntil(end)
        let s2 = run.server()
        let b2 = ProcSample.selfCPU()
        let sent = seq
        let drainEnd = nowNs() + UInt64(run.common.drain * 1e9)
        while receiver.received(0) < sent, nowNs() < drainEnd { try? await Task.sleep(nanoseconds: 1_000_000) }
        let t = receiver.totals(0)
        let hist = receiver.histogram
        let lost = sent > t.unique ? sent - t.unique : 0
        var fields: [(String, Figure)] = [
            ("sent", .int(Int64(sent))), ("received", .int(Int64(t.unique))),
            ("deliveries_measured", .int(Int64(hist.totalCount))),
            ("send_rate", .double(Double(sent) / (Double(end - start) / 1e9), decimals: 0)),
            ("latency", latencyFigure(hist)),
            ("lost", .int(Int64(lost))), ("dup", .int(Int64(t.dups))), ("gaps", .int(Int64(t.gaps))),
        ]
        if sendFailed { fields.append(("send_failed", .bool(true))) }
        let window = Double(end - measureStart) / 1e9
        if let s1, let s2 {
            let cpu = s2.cpuSeconds - s1.cpuSeconds
            fields.append(("server_cpu_s", .double(cpu, decimals: 3)))
            fields.append(("server_cpu_pct", .double(100 * cpu / window, decimals: 1)))
        }
        fields.append(("bench_cpu_pct", .double(100 * (b2 - b1) / window, decimals: 0)))
        rep.add("latency_phase", .object(fields))
        rep.add("latency", latencyFigure(hist))
        if let s1, let s2 { rep.add("server_cpu_s_measured", s2.cpuSeconds - s1.cpuSeconds, 3) }
        return (!sendFailed, lost, t.dups, t.gaps, t.unique)
    }

    private func throughputPhase(_ link: PrivateLink, _ a: ChatConnection, _ receiver: PeerReceiver) async -> PhaseResult {
        let o = options
        let window = UInt64(o.window)
        let frameOverhead = PrivateFrame.text("").buffer().readableBytes
        let s1 = run.server()
        let b1 = ProcSample.selfCPU()
        let start = nowNs()
        let end = start + UInt64(o.throughputDuration * 1e9)
        var seq: UInt64 = 0
        var sendFailed = false
        while nowNs() < end {
            if seq - receiver.received(1) >= window {
                try? await Task.sleep(nanoseconds: 20_000)
                continue
            }
            guard await send(link, a, timedText(slot: 1, seq: seq, ts: nowNs(), padding: o.throughputPadding)) else {
                sendFailed = true
                break
            }
            seq += 1
        }
        let sent = seq
        let drainEnd = nowNs() + UInt64(run.common.drain * 1e9)
        while receiver.received(1) < sent, nowNs() < drainEnd { try? await Task.sleep(nanoseconds: 1_000_000) }
        let s2 = run.server()
        let b2 = ProcSample.selfCPU()
        let t = receiver.totals(1)
        let wall = Double(max(t.lastNs, end) - start) / 1e9
        let frameBytes = t.textBytes + t.unique * UInt64(frameOverhead)
        let lost = sent > t.unique ? sent - t.unique : 0
        var fields: [(String, Figure)] = [
            ("duration_s", .double(o.throughputDuration, decimals: 1)), ("window", .int(Int64(o.window))),
            ("text_bytes", .int(Int64(t.unique > 0 ? t.textBytes / t.unique : 0))),
            ("frame_bytes", .int(Int64(t.unique > 0 ? frameBytes / t.unique : 0))),
            ("sent", .int(Int64(sent))), ("received", .int(Int64(t.unique))),
            ("msg_per_s", .double(Double(t.unique) / wall, decimals: 0)),
            ("text_mb_per_s", .double(Double(t.textBytes) / wall / 1e6, decimals: 2)),
            ("frame_mb_per_s", .double(Double(frameBytes) / wall / 1e6, decimals: 2)),
            ("lost", .int(Int64(lost))), ("dup", .int(Int64(t.dups))), ("gaps", .int(Int64(t.gaps))),
        ]
        if sendFailed { fields.append(("send_failed", .bool(true))) }
        if let s1, let s2 {
            let cpu = s2.cpuSeconds - s1.cpuSeconds
            fields.append(("server_cpu_s", .double(cpu, decimals: 3)))
            fields.append(("server_cpu_pct", .double(100 * cpu / wall, decimals: 1)))
        }
        fields.append(("bench_cpu_pct", .double(100 * (b2 - b1) / wall, decimals: 0)))
        rep.add("throughput_phase", .object(fields))
        return (!sendFailed, lost, t.dups, t.gaps, t.unique)
    }
}
