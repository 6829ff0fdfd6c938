import Testing

@testable import ParleyServer

@Suite("MemoryReleaser: heap handed back only after real churn")
struct MemoryReleaserTests {
    @Test("no release below the threshold; one at it; the count starts again after")
    func threshold() {
        let releaser = MemoryReleaser(threshold: 3)
        #expect(!releaser.releaseIfChurned())
        releaser.connectionChurned()
        releaser.connectionChurned()
        #expect(!releaser.releaseIfChurned())
        releaser.connectionChurned()
        #expect(releaser.releaseIfChurned())
        #expect(!releaser.releaseIfChurned())
    }
}
