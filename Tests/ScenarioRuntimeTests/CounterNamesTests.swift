import Foundation
import ScenarioLanguage
import ScenarioRuntime
import Testing
import TestSupport

/// The names `run --stats` prints, in order, for each kind of machine: the
/// scenario JSON output contract (docs/SCENARIO-FORMAT.md). A counter renamed,
/// dropped or moved changes what users and scripts read, so it must show
/// up here as a failure, not as a silent zero.
@Suite("Counter names each machine prints")
struct CounterNamesTests {
    static let guest = ["accesses", "guest_page_faults", "guest_gp_faults", "rejected_register_writes"]
    static let native = guest + [
        "walks", "tlb_hits", "tlb_misses", "stores", "invlpg", "flushes", "guest_pages_backed", "dirty_log_false_positives",
    ]
    static let hardware = guest + ["stores", "vm_entries", "hardware_walks", "hardware_tlb_hits"]
    static let twoDimensional = ["walk_references", "references_per_walk_x100"]
    static let nested = ["nested_faults_to_l1", "nested_emulations"]
    static let mmu = [
        "exits", "shadow_faults_fixed", "spurious_faults", "guest_faults_injected", "emulated_accesses", "mmio_exits",
        "mmio_sptes_created", "shadow_pages_created", "shadow_pages_zapped", "pte_writes_emulated", "pages_flooded",
        "pages_recycled", "unsync", "sync", "local_roots_created", "local_pages_created", "local_pages_freed",
        "cached_root_hits", "cached_root_misses", "roots_loaded", "remote_tlb_flushes", "invlpg", "guest_tlb_flushes",
        "fast_zaps", "trapped_stores", "nested_exits", "nested_faults_reflected", "nested_pdpte_repoints",
        "special_roots_created", "roots_freed",
    ]
    static let memory = ["shadow_pages", "dirty_log_false_positives", "host_table_frames"]

    static func printedNames(_ example: String, mmu: MMUConfiguration? = nil) throws -> [String] {
        let text = try String(contentsOf: repositoryFile("examples/\(example)"), encoding: .utf8)
        var scenario = try ScenarioParser.parse(text, fileName: example)
        if let mmu { scenario.mmu = mmu }
        let runner = try ScenarioRunner(scenario)
        runner.run()
        return runner.machine.statistics.printed.map(\.name)
    }

    @Test("mmu native")
    func native() throws {
        #expect(try Self.printedNames("tour.scenario", mmu: .native) == Self.native)
    }

    @Test("mmu native running a nested guest")
    func nativeNested() throws {
        #expect(try Self.printedNames("nested-ept.scenario", mmu: .native) == Self.native + ["nested_faults_to_l1"])
    }

    @Test("mmu shadow")
    func shadow() throws {
        #expect(try Self.printedNames("tour.scenario", mmu: .shadow(host: .bits64)) == Self.hardware + Self.mmu + Self.memory)
    }

    @Test("mmu tdp")
    func tdp() throws {
        let names = try Self.printedNames("tour.scenario", mmu: .tdp(format: .ept, levels: 4, host: .bits64))
        #expect(names == Self.hardware + Self.twoDimensional + Self.mmu + Self.memory)
    }

    @Test("mmu tdp running a nested guest")
    func tdpNested() throws {
        let names = try Self.printedNames("nested-ept.scenario")
        #expect(names == Self.hardware + Self.twoDimensional + Self.nested + Self.mmu + Self.memory)
    }

    @Test("every counter name is printed by some machine, and each case's name is its raw value")
    func everyCounterIsPrinted() {
        let printed = Set(Self.native + Self.hardware + Self.twoDimensional + Self.nested + Self.mmu + Self.memory + ["nested_faults_to_l1"])
        #expect(Set(Counter.allCases.map(\.name)) == printed)
    }
}
