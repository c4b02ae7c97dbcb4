import CHeapUsage

/// Wall-clock nanoseconds `body` takes, for the benchmarks that divide two
/// timings taken back to back in the same sample (a ratio survives a busy
/// machine better than either figure alone).
@inline(never)
public func nanoseconds(_ body: () -> Void) -> Double {
    let start = ContinuousClock.now
    body()
    let elapsed = ContinuousClock.now - start
    return Double(elapsed.components.seconds) * 1e9 + Double(elapsed.components.attoseconds) / 1e9
}

/// Bytes the process has allocated with malloc and not freed: small blocks in
/// the arenas plus blocks served by mmap.
public func heapBytesInUse() -> Int { Int(heap_bytes_in_use()) }
