/// A parsed scenario: the machine it sets up, the MMU configuration it runs
/// under, and the commands it drives the vCPUs through, in file order.
///
/// The text form is specified in `docs/SCENARIO-FORMAT.md` (the contract with
/// external users). A `Scenario` value is always complete and valid: the
/// parser checks everything that can be checked before a command runs.
public struct Scenario: Sendable, Equatable {
    /// The file name used in diagnostics (as given on the command line).
    public var fileName: String
    public var machine: MachineConfiguration
    public var mmu: MMUConfiguration
    public var commands: [Command]
    /// Line of the `mmu` line (0 when the file has none and runs native).
    public var mmuLine: Int

    /// The second-stage format of the scenario's L1 hypervisor, nil when it has none.
    public var nestedFormat: TDPFormat? {
        for command in commands {
            if case .enterNested(let entry) = command.action, let stage = entry.secondStage {
                if case .npt = stage { return .npt } else { return .ept }
            }
        }
        return nil
    }

    public init(fileName: String, machine: MachineConfiguration, mmu: MMUConfiguration, commands: [Command], mmuLine: Int = 0) {
        self.fileName = fileName
        self.machine = machine
        self.mmu = mmu
        self.commands = commands
        self.mmuLine = mmuLine
    }
}

/// `machine memory=SIZE [maxphyaddr=N] [vcpus=N]`.
public struct MachineConfiguration: Sendable, Equatable {
    /// Guest physical memory is `[0, memorySize)`; a multiple of 4 KiB.
    public var memorySize: UInt64
    /// MAXPHYADDR, 36...52 (default 52).
    public var maxPhysicalAddressBits: Int
    /// Number of vCPUs, 1...64 (default 1).
    public var vcpuCount: Int

    /// The most guest memory a machine can have: 63 TiB. The hypervisor's
    /// host backs guest RAM from 1 TiB up in a 46-bit (64 TiB) physical
    /// space; a larger guest would reach past it. Memory is allocated as it is
    /// written, but every machine's page index takes 8 bytes per GiB up front
    /// (about 0.5 MB at the limit), so the bound is also what keeps a typo
    /// like `memory=4P` from costing anything.
    public static let maximumMemorySize: UInt64 = 63 << 40

    public init(memorySize: UInt64, maxPhysicalAddressBits: Int = 52, vcpuCount: Int = 1) {
        self.memorySize = memorySize
        self.maxPhysicalAddressBits = maxPhysicalAddressBits
        self.vcpuCount = vcpuCount
    }
}

/// The `mmu` line.
public enum MMUConfiguration: Sendable, Equatable, CustomStringConvertible {
    /// No hypervisor: the simulated CPU walks the guest's own tables.
    case native
    /// Shadow paging on a 64-bit or 32-bit PAE host.
    case shadow(host: HostKind, roots: RootsDesign = .local)
    /// Two-dimensional paging with EPT or NPT tables of `levels` levels; on a
    /// PAE host (NPT only) `levels` is 3, the PAE root, and the parser makes
    /// it so whatever `levels=` said: one configuration, one value.
    case tdp(format: TDPFormat, levels: Int, host: HostKind, roots: RootsDesign = .local)

    /// The `mmu` line, as the parser reads it back.
    public var description: String { scenarioText }

    /// How the hypervisor builds roots without a guest table of their shape.
    public var roots: RootsDesign {
        switch self {
        case .native: .local
        case .shadow(_, let roots), .tdp(_, _, _, let roots): roots
        }
    }

    /// The same configuration under another root design (`native` has none).
    public func with(roots: RootsDesign) -> MMUConfiguration {
        switch self {
        case .native: .native
        case .shadow(let host, _): .shadow(host: host, roots: roots)
        case .tdp(let format, let levels, let host, _): .tdp(format: format, levels: levels, host: host, roots: roots)
        }
    }
}

/// `roots=local|local-eager|special` on an `mmu shadow` or `mmu tdp` line:
/// the series' local shadow pages (the default), the same filled at root
/// load, or upstream KVM's special roots before the series (DESIGN.md §4).
public enum RootsDesign: String, Sendable, Equatable, CaseIterable, CustomStringConvertible {
    case local
    case localEager = "local-eager"
    case special
    public var description: String { rawValue }
}

public enum HostKind: String, Sendable, Equatable, CustomStringConvertible {
    case bits64 = "64bit"
    case pae32 = "pae32"
    public var description: String { rawValue }
}

public enum TDPFormat: String, Sendable, Equatable, CustomStringConvertible {
    case ept, npt
    public var description: String { rawValue }
}

/// One line of a scenario that does something, with where it came from.
public struct Command: Sendable, Equatable {
    /// 1-based line number in the scenario file.
    public var line: Int
    public var action: Action

    public init(line: Int, action: Action) {
        self.line = line
        self.action = action
    }
}

/// What a command does. The cases follow the tables of the contract.
public enum Action: Sendable, Equatable {
    /// `poke ADDR VALUE [width=4|8]`: loader write, bypassing every MMU hook.
    case poke(address: UInt64, value: UInt64, width: Int)
    /// `store ADDR VALUE [width=4|8]`: a guest CPU store to guest physical memory.
    case store(address: UInt64, value: UInt64, width: Int)
    /// `peek ADDR [width=4|8]` (observable).
    case peek(address: UInt64, width: Int)

    /// `host zap-all`
    case hostZapAll
    /// `host invalidate GPA SIZE`
    case hostInvalidate(address: UInt64, size: UInt64)
    /// `host max-shadow-pages N`
    case hostMaxShadowPages(Int)
    /// `host dirty-log start|stop|read` (`read` is observable).
    case hostDirtyLog(DirtyLogAction)

    /// `cr0|cr3|cr4|efer|pkru VALUE`: a MOV to the register (WRMSR for EFER,
    /// WRPKRU for PKRU). Observable when the architecture rejects it.
    case writeRegister(RegisterName, UInt64)
    /// `rflags.ac 0|1`
    case setAlignmentCheck(Bool)
    /// `invlpg GVA`
    case invlpg(UInt64)
    /// `flush`
    case flush
    /// `vcpu N`: the following CPU commands and accesses apply to vCPU N.
    case selectVCPU(Int)

    /// `read`, `write`, `fetch` (observable).
    case access(AccessCommand)

    /// `nested npt ncr3=ADDR mode=MODE [flush]`, `nested ept eptp=VALUE [flush]`,
    /// `nested flush`: the L1 hypervisor (re)enters L2 on the current vCPU.
    case enterNested(NestedEntry)

    /// `expect …`: checks the previous observable command.
    case expect(Expectation)
}

/// A nested VM entry by the L1 hypervisor: the second stage it gives L2, and
/// whether it asks for a TLB flush.
public struct NestedEntry: Sendable, Equatable {
    /// nil for `nested flush`: the same second stage as before.
    public var secondStage: SecondStage?
    public var flush: Bool

    public enum SecondStage: Sendable, Equatable {
        /// AMD nested paging: nCR3, and L1's own paging mode, which gives the
        /// nested tables their format.
        case npt(ncr3: UInt64, mode: L1PagingMode)
        /// Intel EPT: the EPT pointer (levels in bits 5:3, A/D enable in bit 6).
        case ept(eptp: UInt64)
    }

    public init(secondStage: SecondStage?, flush: Bool) {
        self.secondStage = secondStage
        self.flush = flush
    }
}

/// The paging mode an L1 hypervisor runs in (`nested npt mode=`).
public enum L1PagingMode: String, Sendable, Equatable, CaseIterable {
    case bits32 = "32-bit"
    case pae
    case level4 = "4-level"
    case level5 = "5-level"

    /// Paging levels of L1's nested tables.
    public var levels: Int {
        switch self {
        case .bits32: 2
        case .pae: 3
        case .level4: 4
        case .level5: 5
        }
    }
}

public enum DirtyLogAction: String, Sendable, Equatable {
    case start, stop, read
}

public enum RegisterName: String, Sendable, Equatable, CaseIterable {
    case cr0, cr3, cr4, efer, pkru
}

/// `read GVA [width=1|2|4|8] [user] [implicit]`,
/// `write GVA [value=VALUE] [width=1|2|4|8] [user] [implicit]`, `fetch GVA [user]`.
public struct AccessCommand: Sendable, Equatable {
    public enum Kind: String, Sendable, Equatable {
        case read, write, fetch
    }

    public var kind: Kind
    public var address: UInt64
    /// 1, 2, 4 or 8 bytes (8 by default; 1 for a fetch). Never crosses a 4 KiB boundary.
    public var width: Int
    /// The value a `write` stores; `nil` stores the bytes already there.
    public var value: UInt64?
    /// CPL 3.
    public var user: Bool
    /// A supervisor-mode implicit access (descriptor-table style).
    public var implicit: Bool

    public init(kind: Kind, address: UInt64, width: Int = 8, value: UInt64? = nil, user: Bool = false, implicit: Bool = false) {
        self.kind = kind
        self.address = address
        self.width = width
        self.value = value
        self.user = user
        self.implicit = implicit
    }
}

/// `expect ok [gpa=ADDR] [value=VALUE]`, `expect fault [ec=VALUE]`, `expect gp`,
/// `expect value=VALUE`.
public enum Expectation: Sendable, Equatable {
    /// The access succeeded (or the register write was accepted); optionally at
    /// this guest physical address and, for a read, with this value.
    case ok(gpa: UInt64?, value: UInt64?)
    /// A page fault reached the guest, optionally with this error code.
    case fault(errorCode: UInt64?)
    /// A #GP reached the guest (non-canonical address, rejected register write).
    case gp
    /// The previous `peek` (or `read`) produced this value.
    case value(UInt64)
    /// An L2 access ended in a fault delivered to L1: `npf`, `ept-violation`
    /// or `ept-misconfig`, optionally at this L2-physical address and with
    /// this EXITINFO1 / exit qualification.
    case nestedFault(kind: NestedFaultKind, gpa: UInt64?, info: UInt64?)
}
