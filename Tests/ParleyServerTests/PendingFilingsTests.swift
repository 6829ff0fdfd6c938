import NIOCore
import NIOPosix
import ParleyProtocol
@testable import ParleyServer
import Testing

/// The requester's side of a `startprivate` relayed to another node: the reply waits here.
@Suite("pending filings of relayed startprivate requests")
struct PendingFilingsTests {
    let loop = MultiThreadedEventLoopGroup.singleton.next()

    @Test func anAnswerResumesTheWaiter() async throws {
        let filings = PendingFilings()
        filings.expect(1)
        async let answer = filings.wait(token: 1, timeout: .seconds(30), on: loop)
        // The waiter may not be registered yet: an early answer is kept for it either way.
        filings.answer(1, .filed)
        #expect(await answer == .filed)
    }

    @Test func anAnswerThatBeatsTheWaiterIsKept() async {
        let filings = PendingFilings()
        filings.expect(2)
        filings.answer(2, .refused(.tooManyRequests, "Error. bob has too many private requests waiting; try again later"))
        #expect(await filings.wait(token: 2, timeout: .seconds(30), on: loop)
                == .refused(.tooManyRequests, "Error. bob has too many private requests waiting; try again later"))
    }

    @Test func noAnswerInTimeIsNoAnswerAndALateOneIsIgnored() async {
        let filings = PendingFilings()
        filings.expect(3)
        #expect(await filings.wait(token: 3, timeout: .milliseconds(50), on: loop) == .noAnswer)
        filings.answer(3, .filed)  // late: nobody waits, nothing is kept
        filings.answer(99, .filed)  // never expected
        filings.expect(4)
        #expect(await filings.wait(token: 4, timeout: .milliseconds(50), on: loop) == .noAnswer, "token 3's answer is not 4's")
    }
}
