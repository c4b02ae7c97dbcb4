import GuestWorkloads
import ScenarioLanguage
import ShadowMMU

/// The hypervisor MMUs the curves compare: KVM's shadow MMU under a 4-level
/// guest, and its TDP MMU with 4-level EPT. Under TDP the direct map is
/// built from 4 KiB pages (dirty logging on, as KVM does while logging), so
/// that one touched page is one EPT violation, as it is one shadow fault
/// under shadow paging, whatever the stride between touched frames.
enum CurveMMU: String, CaseIterable {
    case shadow
    case tdpEPT = "tdp-ept"

    var mode: MMUMode {
        switch self {
        case .shadow: .shadow
        case .tdpEPT: .tdp(format: .ept, levels: 4)
        }
    }

    /// The same MMU as `shadowmmu workload --mmu` names it.
    var workloadConfiguration: MMUConfiguration {
        guard let configuration = MMUName.configuration(named: rawValue) else { fatalError("no workload MMU named \(rawValue)") }
        return configuration
    }

    /// Turns on what keeps the direct map at 4 KiB (nothing under shadow paging:
    /// a 4-level guest's 4 KiB pages are shadowed by 4 KiB sptes).
    func prepare(_ mmu: ShadowMMU) {
        if self == .tdpEPT { mmu.startDirtyLogging() }
    }
}
