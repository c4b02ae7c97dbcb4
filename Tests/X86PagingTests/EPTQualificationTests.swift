import Testing
import X86Paging

/// The exit qualification of every kind of EPT violation the walker can
/// raise, against the SDM's rules (Vol. 3C, "EPT Violations" and "Accessed
/// and Dirty Flags for EPT") and kvm-unit-tests' `ept_access_test_paddr_*`:
///
/// - bits 0-2: a data read is a read, a data write a write, a fetch a fetch;
///   a read of a guest paging-structure entry is a read; the update of an
///   accessed or dirty flag in one is a read and a write; with EPT
///   accessed/dirty flags on, every access to guest paging structures is a
///   read and a write; a PDPTE register load is a read, whatever the flags.
/// - bits 3-5: the read/write/execute rights of the translation (0 when an
///   entry was not present).
/// - bit 7: a linear address is valid (clear for a PDPTE register load).
/// - bit 8: set for the final address, clear for a guest paging structure.
@Suite("EPT violation qualification")
struct EPTQualificationTests {
    struct Case: CustomTestStringConvertible, Sendable {
        let name: String
        let access: NestedAccess
        let accessedDirty: Bool
        /// The leaf's R/W/X rights, or nil for a not-present leaf.
        let rights: UInt64?
        /// nil: the translation succeeds.
        let qualification: UInt64?
        /// Whether the leaf's EPT dirty flag is set by a successful access.
        let setsDirty: Bool
        var testDescription: String { name }
    }

    static let read = NestedAccess(.read)
    static let write = NestedAccess(.write)
    static let fetch = NestedAccess(.fetch)
    static let tableRead = NestedAccess(.read, pagingStructure: true)
    static let flagUpdate = NestedAccess(.write, pagingStructure: true)
    static let pdpteLoad = NestedAccess.pdpteRegisterLoad

    static let cases: [Case] = [
        // Final addresses: bit 8 set, bits 0-2 the access.
        Case(name: "data read, not present", access: read, accessedDirty: false, rights: nil, qualification: 0x181, setsDirty: false),
        Case(name: "data write, read-only", access: write, accessedDirty: false, rights: 1, qualification: 0x18a, setsDirty: false),
        Case(name: "data write, read/execute", access: write, accessedDirty: true, rights: 5, qualification: 0x1aa, setsDirty: false),
        Case(name: "fetch, read/write", access: fetch, accessedDirty: false, rights: 3, qualification: 0x19c, setsDirty: false),
        Case(name: "fetch, not present, A/D on", access: fetch, accessedDirty: true, rights: nil, qualification: 0x184, setsDirty: false),
        Case(name: "data read, read-only", access: read, accessedDirty: true, rights: 1, qualification: nil, setsDirty: false),
        Case(name: "data write, writable, A/D on", access: write, accessedDirty: true, rights: 3, qualification: nil, setsDirty: true),
        // Guest paging structures, EPT A/D off: a read is a read ...
        Case(name: "table read, A/D off, not present", access: tableRead, accessedDirty: false, rights: nil, qualification: 0x81, setsDirty: false),
        Case(name: "table read, A/D off, read-only", access: tableRead, accessedDirty: false, rights: 1, qualification: nil, setsDirty: false),
        // ... and an accessed/dirty flag update a read and a write.
        Case(name: "flag update, A/D off, read-only", access: flagUpdate, accessedDirty: false, rights: 1, qualification: 0x8b, setsDirty: false),
        Case(name: "flag update, A/D off, read/execute", access: flagUpdate, accessedDirty: false, rights: 5, qualification: 0xab, setsDirty: false),
        Case(name: "flag update, A/D off, not present", access: flagUpdate, accessedDirty: false, rights: nil, qualification: 0x83, setsDirty: false),
        Case(name: "flag update, A/D off, writable", access: flagUpdate, accessedDirty: false, rights: 3, qualification: nil, setsDirty: false),
        // EPT A/D on: every access to guest paging structures is a read and a write.
        Case(name: "table read, A/D on, read-only", access: tableRead, accessedDirty: true, rights: 1, qualification: 0x8b, setsDirty: false),
        Case(name: "table read, A/D on, not present", access: tableRead, accessedDirty: true, rights: nil, qualification: 0x83, setsDirty: false),
        Case(name: "flag update, A/D on, read/execute", access: flagUpdate, accessedDirty: true, rights: 5, qualification: 0xab, setsDirty: false),
        Case(name: "table read, A/D on, writable", access: tableRead, accessedDirty: true, rights: 3, qualification: nil, setsDirty: true),
        // PDPTE register loads: reads, no linear address, no dirty flag.
        Case(name: "PDPTE load, A/D on, read-only", access: pdpteLoad, accessedDirty: true, rights: 1, qualification: nil, setsDirty: false),
        Case(name: "PDPTE load, A/D on, writable", access: pdpteLoad, accessedDirty: true, rights: 7, qualification: nil, setsDirty: false),
        Case(name: "PDPTE load, A/D on, not present", access: pdpteLoad, accessedDirty: true, rights: nil, qualification: 0x1, setsDirty: false),
        Case(name: "PDPTE load, A/D off, not present", access: pdpteLoad, accessedDirty: false, rights: nil, qualification: 0x1, setsDirty: false),
    ]

    /// A 4-level EPT whose upper entries are RWX and whose leaf for
    /// guest-physical 0x5000 has `rights` (memory type WB), at host 0x105000.
    static func ept(leafRights rights: UInt64?, accessedDirty: Bool) -> (SparseMemory, EPTPointer, leaf: UInt64) {
        let memory = SparseMemory(size: 1 << 24)
        memory.store(0x1000, width: 8, 0x2007)
        memory.store(0x2000, width: 8, 0x3007)
        memory.store(0x3000, width: 8, 0x4007)
        let leaf: UInt64 = 0x4000 + 5 * 8
        if let rights { memory.store(leaf, width: 8, 0x10_5000 | 6 << 3 | rights) }
        return (memory, EPTPointer(root: 0x1000, levels: 4, accessedDirty: accessedDirty), leaf)
    }

    @Test("Qualification of an EPT violation", arguments: cases)
    func qualification(of example: Case) {
        let (memory, eptp, leaf) = Self.ept(leafRights: example.rights, accessedDirty: example.accessedDirty)
        var tracer = NoWalkTrace()
        let outcome = EPTWalker.translate(0x5123, example.access, eptp: eptp, memory: memory, maxPhysicalAddressBits: 36, tracer: &tracer)
        switch (outcome, example.qualification) {
        case (.translated(let hpa, _, _), nil):
            #expect(hpa == 0x10_5123)
            let dirty = memory.load(leaf, width: 8) & 1 << 9 != 0
            #expect(dirty == example.setsDirty, "EPT dirty flag after \(example.name)")
            let accessed = memory.load(leaf, width: 8) & 1 << 8 != 0
            #expect(accessed == example.accessedDirty, "EPT accessed flag after \(example.name)")
        case (.fault(let fault), let expected?):
            #expect(fault.guestPhysicalAddress == 0x5123)
            #expect(fault.kind == .eptViolation(qualification: expected),
                    "got \(fault.kind), expected qualification \(String(expected, radix: 16))")
        default:
            Issue.record("\(example.name): got \(outcome), expected qualification \(example.qualification.map { String($0, radix: 16) } ?? "none")")
        }
    }

    @Test("Without a valid linear address, bits 7 and 8 are clear")
    func noLinearAddress() {
        let (memory, eptp, _) = Self.ept(leafRights: nil, accessedDirty: false)
        var tracer = NoWalkTrace()
        let outcome = EPTWalker.translate(0x5000, Self.write, eptp: eptp, memory: memory, maxPhysicalAddressBits: 36,
                                          linearAddressValid: false, tracer: &tracer)
        #expect(outcome == .fault(NestedFault(guestPhysicalAddress: 0x5000, kind: .eptViolation(qualification: 0x2))))
    }

    @Test("The PDPTE view of guest memory loads as reads; the walk's view as A/D-on writes")
    func pdpteViewIsRead() {
        // L2-physical 0x5000 read-only under EPT with A/D on: the PDPTE view
        // reads it, the walk's view (a paging-structure read, judged a write)
        // finds it not present.
        let (memory, eptp, _) = Self.ept(leafRights: 1, accessedDirty: true)
        memory.store(0x10_5000, width: 8, 0x1234_5001)
        let nested = NestedPaging.ept(eptp, maxPhysicalAddressBits: 36)
        let pdptes = NestedGuestMemory(host: memory, nested: nested, size: 1 << 20, loadsPDPTEs: true)
        #expect(pdptes.load(0x5000, width: 8) == 0x1234_5001)
        let walk = NestedGuestMemory(host: memory, nested: nested, size: 1 << 20)
        #expect(walk.load(0x5000, width: 8) == 0)
    }
}
