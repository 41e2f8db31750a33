import Testing
@testable import Projector

@Suite struct BlockArenaTests {
    @Test func blocksLetGoAreHandedOutAgainBySizeAndNeverOverlapLiveOnes() {
        var arena = BlockArena<Int>(smallest: 4)
        var random = SplitMix(seed: 5)
        var live: [(first: Int, capacity: Int, tag: Int)] = []
        for tag in 0..<5_000 {
            if !live.isEmpty && Int.random(in: 0..<3, using: &random) == 0 {
                let gone = live.remove(at: Int.random(in: 0..<live.count, using: &random))
                arena.release(gone.first, gone.capacity)
            } else {
                let capacity = 4 << Int.random(in: 0..<5, using: &random)
                let first = arena.allocate(capacity)
                #expect(arena.isValidBlock(first, capacity))
                for i in 0..<capacity { arena.storage[first + i] = tag }
                live.append((first, capacity, tag))
            }
        }
        // Every live block still holds its own tag: no two live blocks share an element.
        var intact = true
        for block in live where arena.block(block.first, count: block.capacity).contains(where: { $0 != block.tag }) { intact = false }
        #expect(intact)
        // Reuse keeps the arena near what is live, not what was ever asked for.
        let liveElements = live.reduce(0) { $0 + $1.capacity }
        #expect(arena.storage.count < 3 * liveElements + 1_000, "\(arena.storage.count) elements for \(liveElements) live")
        let first = arena.allocate(8)
        #expect(!live.contains { first < $0.first + $0.capacity && $0.first < first + 8 })
    }
}
