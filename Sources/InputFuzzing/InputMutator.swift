import ScenarioRuntime

/// A seeded, deterministic mutator of inputs: the same seed and corpus give
/// the same inputs on every machine, so a finding is reproduced by its seed
/// and iteration alone.
///
/// The mutations are the ones that find parser bugs in line-oriented text:
/// bytes flipped, inserted and deleted, lines duplicated, dropped and spliced
/// from another input, and tokens replaced with values at the edges of the
/// language (the largest numbers, size suffixes, widths, record letters).
public struct InputMutator {
    private var random: SplitMix64
    /// The largest input produced (larger ones are cut).
    public let maximumLength: Int

    public init(seed: UInt64, maximumLength: Int = 4096) {
        var mixer = SplitMix64(seed: seed ^ 0x6675_7a7a_696e_6700)
        random = SplitMix64(seed: mixer.next())
        self.maximumLength = maximumLength
    }

    /// Words at the edges of the scenario language and of Lackey's format.
    static let dictionary: [String] = [
        "machine", "memory=", "memory=64M", "memory=63T", "memory=64T", "maxphyaddr=36", "maxphyaddr=52", "vcpus=64",
        "mmu native", "mmu shadow", "mmu shadow host=pae32", "mmu tdp format=ept levels=5", "mmu tdp format=npt host=pae32",
        "roots=special", "roots=local-eager", "poke", "peek", "read", "write", "fetch", "user", "implicit", "value=", "width=1",
        "width=4", "width=8", "cr0", "cr3", "cr4", "efer", "0x80000001", "0x20", "0x100", "0xd01", "invlpg", "flush", "vcpu 1",
        "nested", "host zap-all", "host invalidate 0 0x1000", "host max-shadow-pages 1", "host dirty-log start",
        "host dirty-log read", "expect ok", "expect fault ec=0x2", "expect value=", "gpa=", "#", "=", "_", "\t", "\r",
        "0", "1", "4096", "0xfff", "0x1000", "0xffffffffffffffff", "18446744073709551615", "18446744073709551616",
        "16777215T", "1K", "1G", "-1", "99999999999999999999", "==1== ", "I  ", " L ", " S ", " M ", ",8", ",4096", ",4097",
        "ffffffffffffffff", "é", "\u{0}",
    ]

    /// An index below `count` (which input to mutate next).
    public mutating func pick(_ count: Int) -> Int { random.next(below: count) }

    /// A mutant of `input`, sometimes spliced with `other`.
    public mutating func mutate(_ input: [UInt8], other: [UInt8]) -> [UInt8] {
        var bytes = input
        for _ in 0...random.next(below: 4) { mutateOnce(&bytes, other: other) }
        if bytes.count > maximumLength { bytes.removeLast(bytes.count - maximumLength) }
        return bytes
    }

    private mutating func position(in bytes: [UInt8]) -> Int { random.next(below: bytes.count + 1) }

    private mutating func lineRanges(_ bytes: [UInt8]) -> [Range<Int>] {
        var ranges: [Range<Int>] = []
        var start = 0
        for (index, byte) in bytes.enumerated() where byte == 0x0a {
            ranges.append(start..<index + 1)
            start = index + 1
        }
        if start < bytes.count { ranges.append(start..<bytes.count) }
        return ranges
    }

    private mutating func mutateOnce(_ bytes: inout [UInt8], other: [UInt8]) {
        switch random.next(below: 9) {
        case 0 where !bytes.isEmpty:  // flip a bit
            let index = random.next(below: bytes.count)
            bytes[index] ^= 1 << UInt8(random.next(below: 8))
        case 1:  // insert a byte
            bytes.insert(UInt8(truncatingIfNeeded: random.next()), at: position(in: bytes))
        case 2 where !bytes.isEmpty:  // delete a range
            let start = random.next(below: bytes.count)
            let end = min(bytes.count, start + 1 + random.next(below: 16))
            bytes.removeSubrange(start..<end)
        case 3, 4:  // insert a dictionary word
            let word = Self.dictionary[random.next(below: Self.dictionary.count)]
            bytes.insert(contentsOf: Array(word.utf8), at: position(in: bytes))
        case 5:  // replace a token (a run of non-blank bytes) with a dictionary word
            let blanks: Set<UInt8> = [0x20, 0x09, 0x0a]
            let tokens = tokenRanges(bytes, blanks: blanks)
            guard !tokens.isEmpty else { return }
            let token = tokens[random.next(below: tokens.count)]
            bytes.replaceSubrange(token, with: Array(Self.dictionary[random.next(below: Self.dictionary.count)].utf8))
        case 6:  // duplicate a line
            let lines = lineRanges(bytes)
            guard !lines.isEmpty else { return }
            let line = Array(bytes[lines[random.next(below: lines.count)]])
            bytes.insert(contentsOf: line, at: lines[random.next(below: lines.count)].lowerBound)
        case 7:  // drop a line
            let lines = lineRanges(bytes)
            guard !lines.isEmpty else { return }
            bytes.removeSubrange(lines[random.next(below: lines.count)])
        default:  // splice a line of the other input
            let lines = lineRanges(other)
            guard !lines.isEmpty else { return }
            let line = Array(other[lines[random.next(below: lines.count)]])
            let targets = lineRanges(bytes)
            bytes.insert(contentsOf: line, at: targets.isEmpty ? 0 : targets[random.next(below: targets.count)].lowerBound)
        }
    }

    private func tokenRanges(_ bytes: [UInt8], blanks: Set<UInt8>) -> [Range<Int>] {
        var ranges: [Range<Int>] = []
        var start: Int?
        for (index, byte) in bytes.enumerated() {
            if blanks.contains(byte) {
                if let begun = start { ranges.append(begun..<index) }
                start = nil
            } else if start == nil {
                start = index
            }
        }
        if let begun = start { ranges.append(begun..<bytes.count) }
        return ranges
    }
}
