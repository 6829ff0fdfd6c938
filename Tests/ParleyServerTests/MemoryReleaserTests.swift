import Testing

@testable import ParleyServer

@Suite("MemoryReleaser: heap handed back only after real churn, once it settles")
struct MemoryReleaserTests {
    @Test("no release below the threshold; none while churn goes on; one once an interval is quiet")
    func settles() {
        let releaser = MemoryReleaser(threshold: 16)
        #expect(!releaser.releaseIfChurned())  // nothing happened
        for _ in 0..<10 { releaser.connectionChurned() }
        #expect(!releaser.releaseIfChurned())  // below the threshold
        for _ in 0..<10 { releaser.connectionChurned() }
        #expect(!releaser.releaseIfChurned())  // 20 >= 16, but 10 came in this interval: still busy
        #expect(releaser.releaseIfChurned())  // a quiet interval: release
        #expect(!releaser.releaseIfChurned())  // and the count started again
    }

    @Test("a burst that never settles is released every 16 thresholds")
    func longBurst() {
        let releaser = MemoryReleaser(threshold: 16)
        var releases = 0
        for _ in 0..<40 {
            for _ in 0..<16 { releaser.connectionChurned() }
            if releaser.releaseIfChurned() { releases += 1 }
        }
        #expect(releases == 2)  // at 256 and 512 of 640
    }
}
