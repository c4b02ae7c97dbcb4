/// A translation cached by the TLB: the page's physical base and the entry
/// bits the permission check needs — never a verdict, so every hit is judged
/// against the control registers of that moment.
public struct TLBEntry: Hashable, Sendable {
    /// Linear address >> 12 of the access that filled the entry.
    public var virtualPage: UInt64
    /// Physical base of the page (of `1 << pageShift` bytes).
    public var pageBase: UInt64
    public var pageShift: UInt8
    public var protectionKey: UInt8
    @usableFromInline var flags: UInt8
    public var pcid: UInt16
    /// The TLB's full-flush generation when filled (0: empty slot).
    @usableFromInline var flushGeneration: UInt32
    /// The PCID's generation when filled.
    @usableFromInline var pcidGeneration: UInt32

    // Computed, not `static let`: see `ControlBit`.
    @inlinable static var userFlag: UInt8 { 1 }
    @inlinable static var writableFlag: UInt8 { 2 }
    @inlinable static var executeDisableFlag: UInt8 { 4 }
    @inlinable static var globalFlag: UInt8 { 8 }
    @inlinable static var dirtyFlag: UInt8 { 16 }

    static let empty = TLBEntry(virtualPage: 0, pageBase: 0, pageShift: 12, protectionKey: 0, flags: 0, pcid: 0, flushGeneration: 0, pcidGeneration: 0)

    @inlinable public var rights: EffectiveRights {
        EffectiveRights(user: flags & Self.userFlag != 0, writable: flags & Self.writableFlag != 0, executeDisable: flags & Self.executeDisableFlag != 0)
    }
    @inlinable public var global: Bool { flags & Self.globalFlag != 0 }
    @inlinable public var dirty: Bool { flags & Self.dirtyFlag != 0 }

    /// Whether `access` may complete through this cached translation under
    /// `registers`: the permission check of the moment, and for a write D
    /// already set (else the CPU walks again to set it).
    @inlinable @inline(__always)
    public func permits(_ access: MemoryAccess, under registers: ControlRegisters) -> Bool {
        (access.kind != .write || dirty) && registers.permits(rights, protectionKey: Int(protectionKey), access)
    }

    /// Where `linear` lands through this translation.
    @inlinable @inline(__always)
    public func physicalAddress(of linear: UInt64) -> UInt64 { pageBase | linear & ((1 << UInt64(pageShift)) - 1) }
}

/// The architectural TLB of one simulated CPU: a direct-mapped array of
/// translations tagged with PCID and generation counters, so that MOV CR3 and
/// full flushes cost O(1).
///
/// Architecture: a CPU may use a cached translation until it is invalidated
/// (INVLPG, MOV CR3 for non-global entries, CR4 changes, full flushes); it may
/// also drop one at any time. A lost entry is just a later re-walk.
public final class TLB {
    public let capacity: Int
    @usableFromInline let slots: UnsafeMutablePointer<TLBEntry>
    @usableFromInline let pcidGenerations: UnsafeMutablePointer<UInt32>
    /// The mutable scalars, behind a `let` pointer: a class's `var` costs a
    /// dynamic exclusivity check on every access, which would more than double
    /// the cost of a TLB hit.
    @usableFromInline let state: UnsafeMutablePointer<State>

    @usableFromInline
    struct State {
        @usableFromInline var flushGeneration: UInt32 = 1
        /// Upper bound on live entries for pages larger than 4 KiB: INVLPG
        /// must find those wherever they sit.
        @usableFromInline var largeEntries = 0
        @usableFromInline var hits = 0
        @usableFromInline var misses = 0
    }

    @inlinable var flushGeneration: UInt32 {
        get { state.pointee.flushGeneration }
        set { state.pointee.flushGeneration = newValue }
    }
    var largeEntries: Int {
        get { state.pointee.largeEntries }
        set { state.pointee.largeEntries = newValue }
    }
    /// Look-ups that found a usable translation.
    public var hits: Int { state.pointee.hits }
    /// Look-ups that had to walk.
    public var misses: Int { state.pointee.misses }

    /// `capacity` is rounded up to a power of two.
    public init(capacity: Int = 4096) {
        var size = 1
        while size < max(capacity, 1) { size <<= 1 }
        self.capacity = size
        slots = .allocate(capacity: size)
        slots.initialize(repeating: .empty, count: size)
        pcidGenerations = .allocate(capacity: 4096)
        pcidGenerations.initialize(repeating: 1, count: 4096)
        state = .allocate(capacity: 1)
        state.initialize(to: State())
    }

    deinit {
        slots.deallocate()
        pcidGenerations.deallocate()
        state.deallocate()
    }

    @inlinable
    func slot(_ virtualPage: UInt64) -> Int { Int(truncatingIfNeeded: virtualPage) & (capacity - 1) }

    /// The live entry for the 4 KiB page containing `linear`, usable by `pcid`.
    @inlinable @inline(__always)
    public func lookup(_ linear: UInt64, pcid: Int) -> TLBEntry? {
        let page = linear >> 12
        let entry = slots[slot(page)]
        guard entry.virtualPage == page, entry.flushGeneration == flushGeneration else { return nil }
        guard entry.global || (Int(entry.pcid) == pcid && entry.pcidGeneration == pcidGenerations[pcid]) else { return nil }
        return entry
    }

    @inlinable
    func countHit() { state.pointee.hits &+= 1 }
    @inlinable
    func countMiss() { state.pointee.misses &+= 1 }

    /// Caches `translation` for the 4 KiB page of its linear address.
    public func insert(_ translation: Translation, pcid: Int) {
        var flags: UInt8 = 0
        if translation.rights.user { flags |= TLBEntry.userFlag }
        if translation.rights.writable { flags |= TLBEntry.writableFlag }
        if translation.rights.executeDisable { flags |= TLBEntry.executeDisableFlag }
        if translation.global { flags |= TLBEntry.globalFlag }
        if translation.dirty { flags |= TLBEntry.dirtyFlag }
        let page = translation.linearAddress >> 12
        if translation.pageShift > 12 { largeEntries += 1 }
        slots[slot(page)] = TLBEntry(
            virtualPage: page, pageBase: translation.pageBase, pageShift: UInt8(translation.pageShift),
            protectionKey: UInt8(translation.protectionKey), flags: flags, pcid: UInt16(pcid),
            flushGeneration: flushGeneration, pcidGeneration: pcidGenerations[pcid])
    }

    /// Drops the cached translation of the 4 KiB page containing `linear`.
    @inlinable
    public func drop(_ linear: UInt64) {
        let page = linear >> 12
        if slots[slot(page)].virtualPage == page { slots[slot(page)].flushGeneration = 0 }
    }

    /// INVLPG: drops every translation of the page containing `linear`, whatever
    /// its size and PCID, global ones included.
    public func invalidatePage(_ linear: UInt64) {
        drop(linear)
        guard largeEntries > 0 else { return }
        var stillLarge = 0
        for index in 0..<capacity where slots[index].flushGeneration == flushGeneration && slots[index].pageShift > 12 {
            let shift = UInt64(slots[index].pageShift)
            if (slots[index].virtualPage << 12) >> shift == linear >> shift {
                slots[index].flushGeneration = 0
            } else {
                stillLarge += 1
            }
        }
        largeEntries = stillLarge
    }

    /// MOV CR3: drops the non-global translations of `pcid`.
    public func flushNonGlobal(pcid: Int) {
        pcidGenerations[pcid] &+= 1
        if pcidGenerations[pcid] == 0 { flushAll() }
    }

    /// Drops every translation, global ones included.
    public func flushAll() {
        flushGeneration &+= 1
        largeEntries = 0
        if flushGeneration == 0 {
            // Generation wrap-around: make sure no stale slot can match again.
            slots.update(repeating: .empty, count: capacity)
            pcidGenerations.update(repeating: 1, count: 4096)
            flushGeneration = 1
        }
    }

    /// The translations a lookup could return now, each for its own PCID,
    /// for audits (O(capacity)): `lookup` decides, so the two cannot disagree.
    public var usableEntries: [TLBEntry] {
        (0..<capacity).compactMap { lookup(slots[$0].virtualPage << 12, pcid: Int(slots[$0].pcid)) }
    }

    /// Number of live entries (for tests and statistics; O(capacity)).
    public var liveEntries: Int {
        (0..<capacity).reduce(0) { $0 + (slots[$1].flushGeneration == flushGeneration ? 1 : 0) }
    }
}
