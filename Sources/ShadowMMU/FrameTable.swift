/// Every live shadow page by the host frame of its table — how KVM finds a
/// page from an spte (`spte_to_child_sp`: the table's `struct page` points
/// at its `kvm_mmu_page`). An array indexed by frame, grown to the highest
/// table frame in use, so that following an spte down a level costs a load,
/// not a hash look-up. Any other frame (guest RAM, a frame no page lives in)
/// finds nothing.
struct FrameTable {
    private var pages: ContiguousArray<ShadowPage?> = []

    subscript(frame: UInt64) -> ShadowPage? {
        get { frame < UInt64(pages.count) ? pages[Int(frame)] : nil }
        set {
            if frame >= UInt64(pages.count) {
                guard newValue != nil else { return }
                precondition(frame < 1 << 32, "shadow pages live in host table frames below 2^32")
                pages.append(contentsOf: repeatElement(nil, count: Int(frame) + 1 - pages.count))
            }
            pages[Int(frame)] = newValue
        }
    }

    /// The live pages, in frame order.
    var values: [ShadowPage] { pages.compactMap { $0 } }
}
