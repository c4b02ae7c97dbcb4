import HostPlatform
@testable import ShadowMMU
import Testing
import VirtualMachine
import X86Paging

/// `usingLocalRootPage` in its two forms (the series' P2 and P3) over every
/// role pair a guest can reach under shadow paging.
@Suite("using_local_root_page")
struct LocalRootPredicateTests {
    enum GuestMode: String, CaseIterable {
        case pagingOff, bits32, pae, level4, level5
        /// Rows 1–3 of DESIGN.md §4 use a local root; row 4 does not.
        var usesLocalRoot: Bool { self == .pagingOff || self == .bits32 || self == .pae }
        var rootLevel: Int {
            switch self {
            case .pagingOff, .bits32, .pae: 3
            case .level4: 4
            case .level5: 5
            }
        }
    }

    struct Variation: CustomStringConvertible {
        var wp: Bool, smep: Bool, smap: Bool, nxe: Bool, pse: Bool
        var description: String { "WP=\(wp ? 1 : 0) SMEP=\(smep ? 1 : 0) SMAP=\(smap ? 1 : 0) NXE=\(nxe ? 1 : 0) PSE=\(pse ? 1 : 0)" }

        static let all: [Variation] = (0..<32).map {
            Variation(wp: $0 & 1 != 0, smep: $0 & 2 != 0, smap: $0 & 4 != 0, nxe: $0 & 8 != 0, pse: $0 & 16 != 0)
        }
    }

    /// The register writes that take a reset vCPU into `mode` with `variation`.
    static func writes(_ mode: GuestMode, _ variation: Variation) -> [(ControlRegister, UInt64)] {
        var cr4: UInt64 = 0
        if variation.smep { cr4 |= CR4.smep.rawValue }
        if variation.smap { cr4 |= CR4.smap.rawValue }
        if variation.pse { cr4 |= CR4.pse.rawValue }
        var efer: UInt64 = variation.nxe ? EFER.nxe.rawValue : 0
        switch mode {
        case .pagingOff, .bits32: break
        case .pae: cr4 |= CR4.pae.rawValue
        case .level4:
            cr4 |= CR4.pae.rawValue
            efer |= EFER.lme.rawValue
        case .level5:
            cr4 |= CR4.pae.rawValue | CR4.la57.rawValue
            efer |= EFER.lme.rawValue
        }
        var cr0 = CR0.protectionEnable.rawValue | (variation.wp ? CR0.writeProtect.rawValue : 0)
        if mode != .pagingOff { cr0 |= CR0.paging.rawValue }
        return [(.cr4, cr4), (.efer, efer), (.cr3, 0x1000), (.cr0, cr0)]
    }

    @Test("Both forms agree on every reachable (cpu role, root role) pair, and hold exactly for rows 1–3",
          arguments: [HostPaging.bits64, .pae32])
    func formsAgreeOnReachableRoles(host: HostPaging) throws {
        let modes: [GuestMode] = host == .pae32 ? [.pagingOff, .bits32, .pae] : GuestMode.allCases
        var pairs = Set<[UInt32]>()
        for mode in modes {
            for variation in Variation.all {
                let vm = VirtualMachine(memorySize: 16 << 20, hostPaging: host)
                for (register, value) in Self.writes(mode, variation) {
                    try #require(vm.writeRegister(vcpu: 0, register, value), "\(mode) \(variation): \(register) \(value.hex) rejected")
                }
                let context = vm.mmu.contexts[0]
                let label = "\(host) \(mode) \(variation): cpu \(context.cpuRole.base), root \(context.rootRole)"
                pairs.insert([context.cpuRole.base.rawValue, context.rootRole.rawValue])
                #expect(context.cpuRole.level == [GuestMode.pagingOff: 0, .bits32: 2, .pae: 3, .level4: 4, .level5: 5][mode], "\(label)")
                #expect(context.rootRole.level == mode.rootLevel, "\(label)")
                #expect(context.rootRole.direct == (mode == .pagingOff), "\(label)")
                #expect(context.usingLocalRootPage == context.usingLocalRootPageLongForm, "forms disagree: \(label)")
                #expect(context.usingLocalRootPage == mode.usesLocalRoot, "\(label)")
                // And the root actually built follows the predicate.
                let root = vm.mmu.loadRoot(vcpu: 0)
                #expect(root.isLocal == mode.usesLocalRoot && root.role.level == mode.rootLevel, "\(label): built \(root.role)")
            }
        }
        // WP/SMEP/SMAP/NX really produced distinct roles (the enumeration is not vacuous).
        #expect(pairs.count >= (host == .pae32 ? 3 * 8 : 5 * 8) - 7)
    }

    @Test("The forms differ only on pairs no guest reaches (an indirect 3-level root over a 4-level guest)")
    func formsDifferOnlyOffTheReachableSet() {
        let vm = VirtualMachine(memorySize: 16 << 20)
        for (register, value) in LocalRootPredicateTests.writes(.level4, Variation(wp: true, smep: false, smap: false, nxe: false, pse: false)) {
            _ = vm.writeRegister(vcpu: 0, register, value)
        }
        let context = vm.mmu.contexts[0]
        #expect(context.usingLocalRootPage == context.usingLocalRootPageLongForm)
        context.rootRole.level = 3  // unreachable: shadow roots have max(guest levels, 3)
        #expect(context.usingLocalRootPage != context.usingLocalRootPageLongForm,
                "the agreement test above would pass even for a wrong predicate")
    }
}
