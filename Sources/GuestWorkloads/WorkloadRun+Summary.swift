import X86Paging
import ScenarioLanguage
import ScenarioRuntime

/// The summary `shadowmmu workload` prints: what the guest kernel did and what
/// it cost the hypervisor.
extension WorkloadRun {
    /// The machine's counter `name` (0 when this MMU has no such counter).

    public var isHypervisor: Bool { options.mmu != .native }

    /// Plain text for a terminal.
    public var summaryText: String {
        var lines: [String] = []
        let mmu = options.mmu.scenarioText.dropFirst("mmu ".count)
        lines.append("\(title): \(options.mode) guest, \(memorySize >> 20) MiB, under \(mmu) (size \(options.size), seed \(options.seed))")
        let k = kernel
        lines.append("guest kernel")
        lines.append("  processes        \(k.processesCreated) created, \(k.forks) forks, \(k.execs) execs, \(k.exits) exits, \(k.contextSwitches) context switches, \(k.idlePeriods) idle periods")
        lines.append("  page faults      \(k.pageFaultsHandled) handled: \(k.anonymousFaults) anonymous, \(k.zeroPageFaults) zero page, \(k.fileFaults) file, \(k.hugePageFaults) huge, \(k.copyOnWriteCopies) copy-on-write copies, \(k.copyOnWriteReuses) reused in place, \(k.permissionUpgrades) permission upgrades, \(k.segmentationFaults) SIGSEGV")
        lines.append("  page tables      \(k.pageTableWrites) entry writes, \(k.pageTablesFreed) tables freed; \(k.munmaps) munmaps (\(k.pagesUnmapped) pages), \(k.invlpgs) invlpg, \(k.tlbFlushes) TLB flushes")
        lines.append("  memory           \(k.framesAllocated) frames allocated, peak \(k.peakFramesInUse) in use (\(k.peakFramesInUse * 4) KiB)")
        lines.append("  accesses         \(k.userAccesses) by user code, \(k.kernelAccesses) by the kernel; \(commands) scenario commands")
        if !trace.isEmpty {
            lines.append("trace")
            for (name, value) in trace { lines.append("  " + Self.padded(name.split(separator: "_").joined(separator: " ")) + "\(value)") }
        }
        if isHypervisor {
            lines.append("hypervisor")
            var rows: [(String, String)] = [
                ("exits", "\(statistics[.exits])"),
                ("shadow faults fixed", "\(statistics[.shadowFaultsFixed])" + (statistics[.spuriousFaults] > 0 ? " (\(statistics[.spuriousFaults]) spurious)" : "")),
                ("guest faults", "\(statistics[.guestPageFaults]) page faults reached the guest"),
                ("emulated writes", "\(statistics[.pteWritesEmulated]) page-table writes (\(statistics[.emulatedAccesses]) accesses emulated, \(statistics[.pagesFlooded]) pages zapped for flooding)"),
                ("unsync / sync", "\(statistics[.unsync]) / \(statistics[.sync])"),
                ("roots", "\(statistics[.rootsLoaded]) loaded, \(statistics[.cachedRootHits]) cached-root hits, \(statistics[.localRootsCreated]) local roots built"),
                ("shadow pages", "\(statistics[.shadowPages]) now, \(statistics[.shadowPagesCreated]) created, \(statistics[.shadowPagesZapped]) zapped"),
                ("memory", "\(statistics[.hostTableFrames] * 4) KiB of host tables (\(statistics[.hostTableFrames]) frames)"),
            ]
            if statistics[.hardwareWalks] > 0, statistics.contains(.walkReferences) {
                rows.append(("walks", "\(statistics[.hardwareWalks]) two-dimensional walks, \(Double(statistics[.referencesPerWalkX100]) / 100) references each"))
            } else {
                rows.append(("hardware", "\(statistics[.hardwareWalks]) walks, \(statistics[.hardwareTLBHits]) TLB hits"))
            }
            for (name, value) in rows { lines.append("  " + Self.padded(name) + value) }
        } else {
            lines.append("no hypervisor (mmu native): \(statistics[.walks]) walks, \(statistics[.tlbHits]) TLB hits, \(statistics[.tlbMisses]) TLB misses, \(statistics[.guestPageFaults]) page faults")
        }
        if let failure {
            lines.append(failure.kind == .mismatch ? "FAILED: \(failure)" : "stopped: \(failure)")
        }
        return lines.joined(separator: "\n")
    }

    static func padded(_ text: String) -> String { text + String(repeating: " ", count: max(1, 21 - text.count)) }

    /// One JSON object with every counter.
    public var summaryJSON: JSONValue {
        func counters(_ pairs: [(String, Int)]) -> JSONValue { .object(pairs.map { ($0.0, .number($0.1)) }) }
        var fields: [(String, JSONValue)] = [
            ("workload", .string(title)), ("mode", .string(options.mode.rawValue)),
            ("mmu", .string(options.mmu.scenarioText)), ("size", .string(options.size.description)),
            ("seed", .number(Int(truncatingIfNeeded: options.seed))), ("memory", .number(Int(memorySize))),
            ("commands", .number(commands)), ("accesses", .number(accesses)),
            ("kernel", counters(kernel.all)),
        ]
        if !trace.isEmpty { fields.append(("trace", counters(trace))) }
        fields.append(("stats", counters(statistics.printed.map { ($0.name, $0.value) })))
        fields.append(("result", .string(failure == nil ? "ok" : failure!.kind == .mismatch ? "panic" : "stopped")))
        if let failure { fields.append(("message", .string(failure.description))) }
        return .object(fields)
    }
}
