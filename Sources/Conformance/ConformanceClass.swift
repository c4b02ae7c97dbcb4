import KVMCatalogue
import ScenarioRuntime
import ShadowMMU

/// How one observable line of a scenario came out across the three
/// witnesses: the architecture (`mmu native` and the checker's oracle), the
/// model (the configuration that corresponds to the host: `mmu shadow` on a
/// host whose KVM runs without TDP) and the host's real KVM.
public enum LineClass: Sendable, Equatable, Hashable, CustomStringConvertible {
    /// KVM and the model gave the same result, and the architecture allows it.
    case agree
    /// KVM and the model gave different results, each one the architecture
    /// allows (a translation the guest did not invalidate, stale or fresh).
    case allowed
    /// KVM and the model agree, the architecture differs, and a catalogued
    /// deviation explains it: the model with that `--fix` is architectural.
    case deviation(Deviation)
    /// The host's KVM flavour changes what the line means (see ``HostFlavour``).
    case hostFlavour(HostFlavour)
    /// KVM and the model disagree: a model bug, or KVM behaviour not modelled yet.
    case modelDiffers
    /// KVM and the model agree, the architecture differs, and no catalogued
    /// deviation explains it.
    case unexplained

    /// The word printed for the line (`deviation efer-nx-forced`, `model-differs`, …).
    public var description: String {
        switch self {
        case .agree: "agree"
        case .allowed: "allowed"
        case .deviation(let deviation): "deviation \(deviation.rawValue)"
        case .hostFlavour(let flavour): "host-flavour \(flavour.rawValue)"
        case .modelDiffers: "model-differs"
        case .unexplained: "unexplained"
        }
    }

    /// `model-differs` and `unexplained` make `conform` fail.
    public var isFailure: Bool { self == .modelDiffers || self == .unexplained }
}

/// Ways this host's KVM gives a result the model of KVM's MMU does not
/// predict, for a reason outside the MMU.
public enum HostFlavour: String, Sendable, Equatable, Hashable, CaseIterable {
    /// KVM with the PVM vendor module emulates CPL-0 code of a guest that is
    /// not PVM-aware instruction by instruction: a CPL-0 access goes through
    /// KVM's software walk of the guest's tables (`kvm_mmu_gva_to_gpa_*`, the
    /// architectural walker), never through the sptes, so a deviation that
    /// lives in the sptes does not show there.
    case pvmEmulatedCPL0 = "pvm-emulated-cpl0"
    /// The guest's MAXPHYADDR is capped at the host's: where the reference
    /// gives different results at the scenario's width and at the host's,
    /// KVM can only give the host's.
    case maxPhysicalAddress = "maxphyaddr"
    /// This host's KVM offers its guests no 1 GiB pages (no PDPE1GB in the
    /// CPUID it supports, as KVM without TDP may): PS in a PDPTE is then a
    /// reserved bit, and an access through a 1 GiB page faults with RSVD.
    case noOneGiBPages = "no-1g-pages"
    /// Found by `fuzz --kvm` on this host (PVM): a CPL-0 instruction fetch
    /// from a user page faults (#PF with P, and I/D when EFER.NXE=1) when CR4.SMAP=1 and EFLAGS.AC=0,
    /// even with CR4.SMEP=0. The architecture applies SMAP to data accesses
    /// only, and so does upstream KVM's software walk
    /// (`update_permission_bitmask` leaves fetches out of `smapf`); PVM runs
    /// or emulates the guest's supervisor mode its own way. With AC=1, or
    /// SMAP off, the fetch completes.
    case pvmSMAPOnMMIOFetch = "pvm-smap-on-mmio-fetch"
}

/// The result of running one scenario on the three witnesses.
public struct ScenarioConformance: Sendable {
    public var fileName: String
    /// nil when the scenario ran; otherwise why not (never a pass).
    public var notRun: String?
    /// Every observable line that ran: its class and what each witness gave.
    public var lines: [Line]
    /// Notes about the run (a maxphyaddr cap, lines after which the
    /// architecture could no longer judge).
    public var notes: [String]

    public struct Line: Sendable {
        public var line: Int
        public var command: String
        public var lineClass: LineClass
        public var architecture: String
        public var model: String
        public var kvm: String
    }

    /// Counts per class.
    public var counts: [LineClass: Int] { Dictionary(lines.map { ($0.lineClass, 1) }, uniquingKeysWith: +) }
    public var failed: Bool { lines.contains { $0.lineClass.isFailure } }
}

extension ScenarioConformance {
    /// `conform --json`: one object per scenario.
    public var json: JSONValue {
        var fields: [(String, JSONValue)] = [("file", .string(fileName))]
        if let notRun {
            fields += [("result", .string("not-run")), ("reason", .string(notRun))]
            return .object(fields)
        }
        fields.append(("result", .string(failed ? "fail" : "pass")))
        let counts = self.counts.sorted { $0.key.description < $1.key.description }
        fields.append(("counts", .object(counts.map { ($0.key.description, .number($0.value)) })))
        fields.append(("lines", .array(lines.map { line in
            .object([
                ("line", .number(line.line)), ("command", .string(line.command)), ("class", .string(line.lineClass.description)),
                ("architecture", .string(line.architecture)), ("model", .string(line.model)), ("kvm", .string(line.kvm)),
            ])
        })))
        if !notes.isEmpty { fields.append(("notes", .array(notes.map { JSONValue.string($0) }))) }
        return .object(fields)
    }
}
