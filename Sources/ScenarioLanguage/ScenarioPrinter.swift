import X86Paging

// The one printer of the scenario language: every value of the AST prints
// as the text the parser reads back as the same value (the tests round-trip
// every configuration and every generated guest). The generators, the
// minimizer, the workload recorder and the tools' messages all print
// through here.

extension Scenario {
    /// The whole scenario as text: the machine line, the mmu line, and one
    /// line per command. Comments and blank lines of the original are not
    /// kept; line numbers therefore differ from the file it came from.
    public var scenarioText: String {
        ([machine.scenarioText, mmu.scenarioText] + commands.map(\.action.scenarioText)).joined(separator: "\n") + "\n"
    }
}

extension MachineConfiguration {
    /// `machine memory=SIZE [maxphyaddr=N] [vcpus=N]`, defaults left out.
    public var scenarioText: String {
        var line = "machine memory=\(Self.sizeText(memorySize))"
        if maxPhysicalAddressBits != 52 { line += " maxphyaddr=\(maxPhysicalAddressBits)" }
        if vcpuCount != 1 { line += " vcpus=\(vcpuCount)" }
        return line
    }

    /// A size in the largest binary unit that divides it exactly (`64M`).
    public static func sizeText(_ bytes: UInt64) -> String {
        if bytes != 0, bytes % (1 << 40) == 0 { return "\(bytes >> 40)T" }
        if bytes != 0, bytes % (1 << 30) == 0 { return "\(bytes >> 30)G" }
        if bytes != 0, bytes % (1 << 20) == 0 { return "\(bytes >> 20)M" }
        if bytes != 0, bytes % (1 << 10) == 0 { return "\(bytes >> 10)K" }
        return "\(bytes)"
    }
}

extension MMUConfiguration {
    /// The `mmu` line. A PAE host's NPT root has 3 levels by definition, so
    /// its line names no `levels=`.
    public var scenarioText: String {
        switch self {
        case .native: "mmu native"
        case .shadow(let host, let roots): "mmu shadow host=\(host)" + roots.optionText
        case .tdp(let format, _, .pae32, let roots): "mmu tdp format=\(format) host=pae32" + roots.optionText
        case .tdp(let format, let levels, let host, let roots): "mmu tdp format=\(format) levels=\(levels) host=\(host)" + roots.optionText
        }
    }
}

extension Action {
    /// The command word, for messages.
    public var name: String {
        switch self {
        case .poke: "poke"
        case .store: "store"
        case .peek: "peek"
        case .hostZapAll: "host zap-all"
        case .hostInvalidate: "host invalidate"
        case .hostMaxShadowPages: "host max-shadow-pages"
        case .hostDirtyLog(let action): "host dirty-log \(action.rawValue)"
        case .writeRegister(let name, _): name.rawValue
        case .setAlignmentCheck: "rflags.ac"
        case .invlpg: "invlpg"
        case .flush: "flush"
        case .selectVCPU: "vcpu"
        case .access(let access): access.kind.rawValue
        case .enterNested: "nested"
        case .expect: "expect"
        }
    }

    /// The command as a line of scenario text; the parser reads it back as
    /// the same action.
    public var scenarioText: String {
        func widthOption(_ width: Int, default defaultWidth: Int = 8) -> String { width == defaultWidth ? "" : " width=\(width)" }
        switch self {
        case .poke(let address, let value, let width): return "poke \(address.hex) \(value.hex)\(widthOption(width))"
        case .store(let address, let value, let width): return "store \(address.hex) \(value.hex)\(widthOption(width))"
        case .peek(let address, let width): return "peek \(address.hex)\(widthOption(width))"
        case .hostZapAll: return "host zap-all"
        case .hostInvalidate(let address, let size): return "host invalidate \(address.hex) \(size.hex)"
        case .hostMaxShadowPages(let count): return "host max-shadow-pages \(count)"
        case .hostDirtyLog(let action): return "host dirty-log \(action.rawValue)"
        case .writeRegister(let name, let value): return "\(name.rawValue) \(value.hex)"
        case .setAlignmentCheck(let value): return "rflags.ac \(value ? 1 : 0)"
        case .invlpg(let address): return "invlpg \(address.hex)"
        case .flush: return "flush"
        case .selectVCPU(let index): return "vcpu \(index)"
        case .access(let access):
            var text = "\(access.kind.rawValue) \(access.address.hex)"
            if access.kind != .fetch { text += widthOption(access.width) }
            if let value = access.value { text += " value=\(value.hex)" }
            if access.user { text += " user" }
            if access.implicit { text += " implicit" }
            return text
        case .expect(let expectation):
            switch expectation {
            case .ok(let gpa, let value):
                return "expect ok" + (gpa.map { " gpa=\($0.hex)" } ?? "") + (value.map { " value=\($0.hex)" } ?? "")
            case .fault(let code): return "expect fault" + (code.map { " ec=\($0.hex)" } ?? "")
            case .gp: return "expect gp"
            case .value(let value): return "expect value=\(value.hex)"
            case .nestedFault(let kind, let gpa, let info):
                return "expect \(kind)" + (gpa.map { " gpa=\($0.hex)" } ?? "") + (info.map { " \(kind.expectationKey ?? "info")=\($0.hex)" } ?? "")
            }
        case .enterNested(let entry):
            let flush = entry.flush ? " flush" : ""
            switch entry.secondStage {
            case .npt(let ncr3, let mode)?: return "nested npt ncr3=\(ncr3.hex) mode=\(mode.rawValue)\(flush)"
            case .ept(let eptp)?: return "nested ept eptp=\(eptp.hex)\(flush)"
            case nil: return "nested flush"
            }
        }
    }
}

extension RootsDesign {
    /// ` roots=NAME`, or nothing for the default design (lines stay as they were).
    var optionText: String { self == .local ? "" : " roots=\(rawValue)" }
}
