extension ScenarioParser.LineReader {
    /// `machine memory=SIZE [maxphyaddr=N] [vcpus=N]`.
    mutating func machine() throws(ScenarioError) -> MachineConfiguration {
        let options = try options(
            ["memory", "maxphyaddr", "vcpus"], of: "machine", usage: "memory=SIZE, maxphyaddr=N or vcpus=N"
        )

        var maxPhysicalAddressBits = 52
        if let token = options.value("maxphyaddr") {
            let expected = "a MAXPHYADDR from 36 to 52"
            let bits = try value(of: token, expected)
            guard (36...52).contains(bits) else { throw error(expected: expected, found: token) }
            maxPhysicalAddressBits = Int(bits)
        }

        var vcpuCount = 1
        if let token = options.value("vcpus") {
            let expected = "a vCPU count from 1 to 64"
            let count = try value(of: token, expected)
            guard (1...64).contains(count) else { throw error(expected: expected, found: token) }
            vcpuCount = Int(count)
        }

        guard let token = options.value("memory") else {
            throw errorAtEnd(expected: "a 'memory=SIZE' option after 'machine'")
        }
        let expected = "a memory size that is a positive multiple of 4096"
        let memorySize = try value(of: token, expected)
        guard memorySize > 0, memorySize % 4096 == 0 else { throw error(expected: expected, found: token) }
        guard memorySize <= MachineConfiguration.maximumMemorySize else {
            throw error(
                expected: "a memory size of at most \(MachineConfiguration.sizeText(MachineConfiguration.maximumMemorySize)) (the most the model's host can back)",
                found: token)
        }
        guard memorySize <= 1 << UInt64(maxPhysicalAddressBits) else {
            throw error(
                expected: "a memory size of at most 2^\(maxPhysicalAddressBits) bytes (maxphyaddr=\(maxPhysicalAddressBits))",
                found: token
            )
        }
        return MachineConfiguration(
            memorySize: memorySize, maxPhysicalAddressBits: maxPhysicalAddressBits, vcpuCount: vcpuCount
        )
    }

    /// `mmu native`, `mmu shadow [host=…]`, `mmu tdp format=… [levels=…] [host=…]`.
    mutating func mmu() throws(ScenarioError) -> MMUConfiguration {
        let kind = try word(["native", "shadow", "tdp"], after: "mmu")
        switch kind.text {
        case "shadow":
            let options = try options(["host", "roots"], of: "shadow", usage: "host=64bit|pae32 or roots=local|local-eager|special")
            return .shadow(host: try host(options), roots: try roots(options))
        case "tdp":
            let options = try options(
                ["format", "levels", "host", "roots"], of: "tdp", usage: "format=ept|npt, levels=4|5, host=64bit|pae32 or roots=local|local-eager|special")
            let host = try host(options)
            let levels = try choice(options, "levels", among: [4, 5], default: 4)
            guard let formatName = try word(options, "format", among: ["ept", "npt"]),
                  let format = TDPFormat(rawValue: formatName) else {
                throw errorAtEnd(expected: "a 'format=ept' or 'format=npt' option after 'tdp'")
            }
            if host == .pae32 {
                // A 32-bit host has no EPT, and its NPT root is the 3-level PAE one.
                if format == .ept, let token = options.tokens["host"] {
                    throw error(expected: "'host=64bit' with 'format=ept' (EPT needs a 64-bit host)", found: token)
                }
                if levels == 5, let token = options.tokens["levels"] {
                    throw error(expected: "no 'levels=5' with 'host=pae32' (a PAE host has a 3-level root)", found: token)
                }
            }
            return .tdp(format: format, levels: host == .pae32 ? 3 : levels, host: host, roots: try roots(options))
        default:
            _ = try options(of: "native")
            return .native
        }
    }

    private func roots(_ options: ScenarioParser.Options) throws(ScenarioError) -> RootsDesign {
        let name = try word(options, "roots", among: RootsDesign.allCases.map(\.rawValue))
        return name.flatMap(RootsDesign.init(rawValue:)) ?? .local
    }

    private func host(_ options: ScenarioParser.Options) throws(ScenarioError) -> HostKind {
        let name = try word(options, "host", among: [HostKind.bits64.rawValue, HostKind.pae32.rawValue])
        return name.flatMap(HostKind.init(rawValue:)) ?? .bits64
    }
}
