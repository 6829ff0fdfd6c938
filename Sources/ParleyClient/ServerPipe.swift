import NIOConcurrencyHelpers
import NIOCore
import ParleyProtocol

/// One server connection as the loop uses it: its frames go into the loop's stream tagged with
/// its generation, and requests leave through one writer task in the order they were queued, so
/// the loop never waits on the socket.
final class ServerPipe: Sendable {
    private let channel: Channel
    private let writer: AsyncStream<ByteBuffer>.Continuation
    private let task: Task<Void, Never>

    init(_ connection: ServerConnection, generation: Int, sink: AsyncStream<LoopEvent>.Continuation,
         unhandled: NIOLockedValueBox<Int>, limit: Int) {
        let (writes, writer) = AsyncStream.makeStream(of: ByteBuffer.self)
        let asyncChannel = connection.channel
        let channel = asyncChannel.channel
        self.channel = channel
        self.writer = writer
        task = Task {
            _ = try? await asyncChannel.executeThenClose { inbound, outbound in
                let sender = Task {
                    for await buffer in writes {
                        do { try await outbound.write(buffer) } catch { return }
                    }
                }
                // The wire in order, into the one stream.
                let reader = Task {
                    do {
                        for try await frame in inbound {
                            sink.yield(.server(generation: generation, .frame(frame)))
                            // Never drop silently: closing makes the server re-send unacked stored messages later.
                            if unhandled.withLockedValue({ $0 += 1; return $0 }) > limit {
                                sink.yield(.server(generation: generation, .connectionClosed(.eventBufferOverflow)))
                                channel.close(promise: nil)
                                return
                            }
                        }
                        sink.yield(.server(generation: generation, .connectionClosed(nil)))
                    } catch {
                        sink.yield(.server(generation: generation, .connectionClosed(ServerConnection.clientError(for: error))))
                    }
                }
                // The writer ends when the loop is done with this connection (or a write failed).
                await sender.value
                try? await channel.close()
                await reader.value
            }
        }
    }

    func write(_ buffer: ByteBuffer) { writer.yield(buffer) }

    /// Lets go at once: what is not written yet is dropped, the connection closes.
    func abandon() {
        writer.finish()
        channel.close(promise: nil)
    }

    /// Acks and the logout go out before the close; a server that stopped reading gets `cutOff`
    /// to take them, then the close cuts the writes short.
    func finish(cutOff: Duration) async {
        writer.finish()
        let channel = self.channel
        let timer = channel.eventLoop.scheduleTask(in: .nanoseconds(cutOff.nanoseconds)) { channel.close(promise: nil) }
        await task.value
        timer.cancel()
    }

    func finished() async { await task.value }
}

/// Hands a connection made for a reconnect to the loop, or back to its maker once the loop has
/// ended (which then closes it), so none is left open.
final class ConnectSlot: Sendable {
    private let state = NIOLockedValueBox<(connection: ServerConnection?, over: Bool)>((nil, false))

    /// False when the session is over: the caller closes `connection`.
    func offer(_ connection: ServerConnection) -> Bool {
        state.withLockedValue { s in
            if s.over { return false }
            s.connection = connection
            return true
        }
    }

    func take() -> ServerConnection? {
        state.withLockedValue { s in
            defer { s.connection = nil }
            return s.connection
        }
    }

    /// Ends the slot; returns a connection offered and never taken.
    func close() -> ServerConnection? {
        state.withLockedValue { s in
            s.over = true
            defer { s.connection = nil }
            return s.connection
        }
    }
}
