import X86Paging

extension ScenarioParser.LineReader {
    /// Every command after the setup lines. `earlier` is what an `expect`
    /// looks back through.
    mutating func action(machine: MachineConfiguration, earlier: [Command]) throws(ScenarioError) -> Action {
        let name = command.text
        switch name {
        case "poke", "store":
            let (address, addressToken) = try address(after: name)
            let (value, valueToken) = try number("a value to write after the address")
            let options = try options(["width"], of: name, usage: "width=4|8")
            let width = try choice(options, "width", among: [4, 8], default: 8)
            try checkFits(value, width: width, token: valueToken)
            try checkPhysicalAccess(address, width: width, by: name, token: addressToken, machine: machine)
            return name == "poke"
                ? .poke(address: address, value: value, width: width)
                : .store(address: address, value: value, width: width)

        case "peek":
            let (address, addressToken) = try address(after: name)
            let options = try options(["width"], of: name, usage: "width=4|8")
            let width = try choice(options, "width", among: [4, 8], default: 8)
            try checkPhysicalAccess(address, width: width, by: name, token: addressToken, machine: machine)
            return .peek(address: address, width: width)

        case "host":
            return try hostEvent()

        case "cr0", "cr3", "cr4", "efer", "pkru":
            let (value, token) = try number("a value after '\(name)'")
            _ = try options(of: name)
            guard let register = RegisterName(rawValue: name) else { throw error(expected: "a register", found: command) }
            if register == .pkru { try checkFits(value, width: 4, token: token) }
            return .writeRegister(register, value)

        case "rflags.ac":
            let expected = "0 or 1 after 'rflags.ac'"
            let token = try next(expected)
            let value = ScenarioParser.number(token.text)
            guard case .success(let bit) = value, bit <= 1 else { throw error(expected: expected, found: token) }
            _ = try options(of: name)
            return .setAlignmentCheck(bit == 1)

        case "invlpg":
            let (address, _) = try address(after: name)
            _ = try options(of: name)
            return .invlpg(address)

        case "flush":
            _ = try options(of: name)
            return .flush

        case "vcpu":
            let count = machine.vcpuCount
            let expected = "a vCPU number from 0 to \(count - 1) (the machine has \(count) vCPU\(count == 1 ? "" : "s"))"
            let (index, token) = try number(expected)
            guard index < UInt64(count) else { throw error(expected: expected, found: token) }
            _ = try options(of: name)
            return .selectVCPU(Int(index))

        case "read", "write", "fetch":
            return .access(try access())

        case "nested":
            return .enterNested(try nestedEntry(machine: machine))

        default:
            return .expect(try expectation(earlier: earlier))
        }
    }

    /// `host zap-all|invalidate GPA SIZE|max-shadow-pages N|dirty-log …`.
    private mutating func hostEvent() throws(ScenarioError) -> Action {
        let event = try word(["zap-all", "invalidate", "max-shadow-pages", "dirty-log"], after: "host")
        switch event.text {
        case "zap-all":
            _ = try options(of: event.text)
            return .hostZapAll

        case "invalidate":
            let (address, addressToken) = try address(after: event.text)
            let (size, sizeToken) = try number("a size after the address")
            _ = try options(of: event.text)
            guard address % 4096 == 0 else {
                throw error(expected: "an address that is a multiple of 4096", found: addressToken)
            }
            guard size > 0, size % 4096 == 0 else {
                throw error(expected: "a size that is a positive multiple of 4096", found: sizeToken)
            }
            // Ending exactly at 2^64 is fine: the end wraps to 0.
            let (end, overflow) = address.addingReportingOverflow(size)
            guard !overflow || end == 0 else {
                throw error(expected: "a range that ends at or below 2^64", found: sizeToken)
            }
            return .hostInvalidate(address: address, size: size)

        case "max-shadow-pages":
            let expected = "a page count from 1 to \(Int.max)"
            let (count, token) = try number(expected)
            guard count >= 1, count <= UInt64(Int.max) else { throw error(expected: expected, found: token) }
            _ = try options(of: event.text)
            return .hostMaxShadowPages(Int(count))

        default:
            let operation = try word(["start", "stop", "read"], after: "dirty-log")
            _ = try options(of: "dirty-log \(operation.text)")
            return .hostDirtyLog(DirtyLogAction(rawValue: operation.text) ?? .read)
        }
    }

    /// `nested npt ncr3=ADDR mode=MODE [flush]`, `nested ept eptp=VALUE [flush]`, `nested flush`.
    private mutating func nestedEntry(machine: MachineConfiguration) throws(ScenarioError) -> NestedEntry {
        let kind = try word(["npt", "ept", "flush"], after: "nested")
        switch kind.text {
        case "flush":
            _ = try options(of: "nested flush")
            return NestedEntry(secondStage: nil, flush: true)
        case "npt":
            let options = try options(["ncr3", "mode"], flags: ["flush"], of: "nested npt", usage: "ncr3=ADDR, mode=32-bit|pae|4-level|5-level or flush")
            guard let ncr3Token = options.value("ncr3") else {
                throw error("expected 'ncr3=ADDR' (the root of L1's nested page tables) after 'nested npt'", at: kind.column)
            }
            let ncr3 = try value(of: ncr3Token, "a hexadecimal address for 'ncr3='")
            let modes = L1PagingMode.allCases.map(\.rawValue)
            guard let modeName = try word(options, "mode", among: modes), let mode = L1PagingMode(rawValue: modeName) else {
                throw error("expected 'mode=32-bit|pae|4-level|5-level' (L1's paging mode, the nested tables' format) after 'nested npt'", at: kind.column)
            }
            return NestedEntry(secondStage: .npt(ncr3: ncr3, mode: mode), flush: options.has("flush"))
        default:
            let options = try options(["eptp"], flags: ["flush"], of: "nested ept", usage: "eptp=VALUE or flush")
            guard let eptpToken = options.value("eptp") else {
                throw error("expected 'eptp=VALUE' (the EPT pointer) after 'nested ept'", at: kind.column)
            }
            let eptp = try value(of: eptpToken, "a hexadecimal EPT pointer for 'eptp='")
            let levels = EPTPointer(rawValue: eptp).levels
            guard levels == 4 || levels == 5, eptp & 7 == 6 || eptp & 7 == 0,
                  eptp & bitRange(63, machine.maxPhysicalAddressBits) == 0, eptp & bitRange(11, 7) == 0
            else {
                throw error(
                    expected: "an EPT pointer a VM entry accepts (memory type 0 or 6 in bits 2:0, 4 or 5 levels in bits 5:3, no reserved bits)",
                    found: eptpToken)
            }
            return NestedEntry(secondStage: .ept(eptp: eptp), flush: options.has("flush"))
        }
    }

    /// `read`, `write` and `fetch`.
    private mutating func access() throws(ScenarioError) -> AccessCommand {
        let name = command.text
        let kind = AccessCommand.Kind(rawValue: name) ?? .read
        let (address, addressToken) = try address(after: name)
        let options = switch kind {
        case .read: try options(["width"], flags: ["user", "implicit"], of: name, usage: "width=1|2|4|8, user or implicit")
        case .write: try options(["value", "width"], flags: ["user", "implicit"], of: name, usage: "value=VALUE, width=1|2|4|8, user or implicit")
        case .fetch: try options(flags: ["user"], of: name, usage: "user")
        }
        let width = kind == .fetch ? 1 : try choice(options, "width", among: [1, 2, 4, 8], default: 8)
        var value: UInt64?
        if let token = options.value("value") {
            let number = try self.value(of: token, "a value to write")
            try checkFits(number, width: width, token: token)
            value = number
        }
        try checkWithinPage(address, width: width, by: name, token: addressToken)
        return AccessCommand(
            kind: kind, address: address, width: width, value: value,
            user: options.has("user"), implicit: options.has("implicit")
        )
    }

    // MARK: Range checks

    func checkFits(_ value: UInt64, width: Int, token: ScenarioParser.Token) throws(ScenarioError) {
        guard ScenarioParser.fits(value, inBytes: width) else {
            throw error("value \(ScenarioParser.quoted(token.text).dropFirst().dropLast()) does not fit in \(width) bytes", at: token.column)
        }
    }

    func checkWithinPage(_ address: UInt64, width: Int, by name: String, token: ScenarioParser.Token) throws(ScenarioError) {
        guard (address & 0xfff) + UInt64(width) <= 4096 else {
            let article = width == 8 ? "an" : "a"
            throw error(
                "\(article) \(width)-byte \(name) at \(ScenarioParser.hexadecimal(address)) crosses a 4 KiB boundary",
                at: token.column
            )
        }
    }

    /// A `poke`, `store` or `peek` stays inside one page of guest memory.
    private func checkPhysicalAccess(
        _ address: UInt64, width: Int, by name: String, token: ScenarioParser.Token, machine: MachineConfiguration
    ) throws(ScenarioError) {
        try checkWithinPage(address, width: width, by: name, token: token)
        // The memory size is a multiple of 4 KiB, so a page-contained access
        // that starts inside memory ends inside it.
        guard address < machine.memorySize else {
            throw error(
                expected: "an address inside guest memory [0, \(ScenarioParser.hexadecimal(machine.memorySize)))",
                found: token
            )
        }
    }
}
