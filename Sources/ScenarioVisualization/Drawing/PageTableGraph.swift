import KVMCatalogue
import X86Paging
import ScenarioLanguage
import ScenarioRuntime
import ShadowMMU

/// The guest's page tables and the hypervisor's tables at one point of a
/// scenario, as a graph a renderer can draw: each table is a node listing its
/// present entries, entries that lead to another table are edges, and each
/// shadow page has a dashed edge to the guest table it shadows.
///
/// Two sides: the guest's tables, walked from every vCPU's CR3 in the
/// guest's current paging mode (guest-physical addresses), and the tables the
/// hypervisor built and the hardware walks — shadow pages under `mmu shadow`,
/// the direct map under `mmu tdp` — reachable from every vCPU's root (host
/// frames). Built by `init(machine:…)`; drawn by `dot` (Graphviz) and
/// `svg(…)` (a self-contained layered layout for HTML reports).
public struct PageTableGraph: Sendable, Equatable {
    public enum Side: String, Sendable, Equatable, CaseIterable {
        case guest, hypervisor
    }

    /// What makes a table worth a second look; each is drawn distinctly.
    public enum Mark: String, Sendable, Hashable, CaseIterable, Comparable {
        /// A local shadow page: owned by one vCPU, outside the page hash (DESIGN.md §4).
        case local
        /// One of upstream's special root tables (`roots=special`): a raw
        /// per-vCPU table, not a shadow page.
        case special
        /// A leaf shadow page the guest may write without trapping until it flushes.
        case unsync
        /// A guest table that the hypervisor write-tracks: every write traps.
        case writeTracked = "write-tracked"
        /// A guest table whose shadow is in sync: read-only, the next write unsyncs it.
        case writeProtected = "write-protected"
        /// A page that maps a gfn range instead of shadowing a guest table (`role.direct`).
        case direct
        /// A zapped page still held as a root.
        case invalid

        public static func < (a: Mark, b: Mark) -> Bool {
            allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
        }

        /// Shown in a node and in the legend.
        public var legend: String {
            switch self {
            case .local: "local shadow page (one vCPU's, not in the hash)"
            case .special: "special root table (upstream's pae_root/pml4_root/pml5_root: no shadow page)"
            case .unsync: "unsync shadow page (guest writes do not trap)"
            case .writeTracked: "write-tracked guest table (every write traps)"
            case .writeProtected: "write-protected guest table (next write unsyncs)"
            case .direct: "direct page (maps a gfn range)"
            case .invalid: "invalid page (zapped, still a root)"
            }
        }
    }

    /// One present entry of a table.
    public struct Entry: Sendable, Equatable {
        public enum Kind: String, Sendable, Equatable {
            /// Points to the next table (`child` when that table is drawn).
            case table
            /// Maps a page: 4 KiB at level 1, huge above.
            case leaf
            /// An MMIO spte (the hypervisor's marker for guest-physical addresses without memory).
            case mmio
            /// Present but unusable: it leads outside guest memory, or sets a reserved bit.
            case broken
        }

        public var index: Int
        public var raw: UInt64
        public var kind: Kind
        /// "2M", "4M" or "1G" for a huge leaf; nil otherwise.
        public var hugePageSize: String?
        /// What the entry says, without its index: `PT 0x4000 [P RW US]`,
        /// `gfn 0x100 → hpa 0x10000100000 P W U A`.
        public var text: String
        /// The node the entry points to, when it is drawn.
        public var child: String?

        public var isHuge: Bool { hugePageSize != nil }
    }

    /// One table.
    public struct Node: Sendable, Equatable, Identifiable {
        /// Stable within a graph: `g8-L2-0x2000` (a guest table with 8-byte
        /// entries, level 2, at gpa 0x2000), `h-0x10a` (the hypervisor table in
        /// host frame 0x10a).
        public var id: String
        public var side: Side
        public var level: Int
        /// `PD at gpa 0x2000`, `level-3 shadow page`.
        public var title: String
        /// Further facts, one per line: role, gfn range, protection, owner.
        public var details: [String]
        /// Present entries, by index, at most the graph's `maxEntriesPerNode`.
        public var entries: [Entry]
        /// Present entries not listed (and whose tables are not drawn).
        public var omittedEntries: Int
        public var marks: Set<Mark>
    }

    public struct Edge: Sendable, Equatable {
        public enum Kind: String, Sendable, Equatable {
            /// A table entry pointing to the next table (from entry `entry` of `from`).
            case entry
            /// From a vCPU's root marker to its top table.
            case root
            /// From a shadow page to the guest table it shadows (drawn dashed).
            case shadows
        }

        public var from: String
        /// The entry index in `from` for `.entry` edges.
        public var entry: Int?
        public var to: String
        public var kind: Kind
    }

    /// Where a vCPU's walk starts on one side.
    public struct Root: Sendable, Equatable {
        public var vcpu: Int
        public var side: Side
        /// A node id of its own (`root-g-0`), the marker drawn before the top table.
        public var id: String
        /// `vCPU 0 CR3 0x1000 (PAE)`, `vCPU 0 root: host frame 0x101 (3 levels)`.
        public var label: String
        /// The top table; nil when there is none (paging off, no root loaded).
        public var node: String?
    }

    /// What the picture shows: file, line, configuration.
    public var title: String
    /// The heading of each side: `guest page tables (4-level)`, `shadow pages (mmu shadow host=64bit)`.
    public var guestHeading: String
    public var hypervisorHeading: String?
    /// Facts that belong to no node (paging off, no root yet, tables not shown).
    public var notes: [String]
    public var nodes: [Node]
    public var edges: [Edge]
    public var roots: [Root]
    /// The cap on entries listed per node.
    public var maxEntriesPerNode: Int

    public init(
        title: String, guestHeading: String, hypervisorHeading: String?, notes: [String] = [], nodes: [Node] = [], edges: [Edge] = [],
        roots: [Root] = [], maxEntriesPerNode: Int
    ) {
        self.title = title
        self.guestHeading = guestHeading
        self.hypervisorHeading = hypervisorHeading
        self.notes = notes
        self.nodes = nodes
        self.edges = edges
        self.roots = roots
        self.maxEntriesPerNode = maxEntriesPerNode
    }

    /// The node with `id`.
    public func node(_ id: String) -> Node? { nodes.first { $0.id == id } }

    /// The nodes of one side, in the order they were found (parents first).
    public func nodes(on side: Side) -> [Node] { nodes.filter { $0.side == side } }

    /// The marks used anywhere in the graph, in legend order.
    public var marksUsed: [Mark] { Set(nodes.flatMap(\.marks)).sorted() }

    /// Whether any entry maps a huge page.
    public var hasHugeMappings: Bool { nodes.contains { $0.entries.contains(where: \.isHuge) } }

    /// The text an entry is listed with: `[12] PT 0x4000 [P RW US]`.
    public static func line(for entry: Entry) -> String {
        "[\(entry.index)] " + (entry.hugePageSize.map { "\($0) " } ?? "") + entry.text
    }

    /// The line that closes a node whose entries were capped.
    public static func omittedLine(_ count: Int) -> String {
        "… \(count) more present \(count == 1 ? "entry" : "entries") (not shown)"
    }
}

extension PageTableGraph {
    /// The default cap on entries listed per node.
    public static let defaultMaxEntriesPerNode = 16

    /// Checks that `line` names a line of a scenario file of `lineCount` lines
    /// (for `--at`); the error is located at the line asked for.
    public static func checkLine(_ line: Int, lineCount: Int, fileName: String) throws(ScenarioError) {
        guard line < 1 || line > lineCount else { return }
        throw ScenarioError(
            file: fileName, line: max(line, 1), column: 1,
            message: "expected --at to name a line of the scenario (1…\(lineCount)), found \(line)")
    }

    /// Runs `scenario` up to and including line `line` (every command when
    /// nil) and draws the tables as they are then; `regressions` and `fixes`
    /// as for `ScenarioRunner`.
    public static func draw(
        _ scenario: Scenario, at line: Int? = nil, maxEntriesPerNode: Int = defaultMaxEntriesPerNode,
        regressions: Set<Regression> = [], fixes: Set<Deviation> = []
    ) throws(ScenarioError) -> PageTableGraph {
        let runner = try ScenarioRunner(scenario, regressions: regressions, fixes: fixes)
        for command in scenario.commands {
            if let line, command.line > line { break }
            runner.step(observe: { _ in }, expectationFailed: { _ in })
        }
        let point = line.map { "after line \($0)" } ?? "at the end"
        return PageTableGraph(
            machine: runner.machine, scenario: scenario, title: "\(scenario.fileName) \(point) — \(scenario.mmu)",
            maxEntriesPerNode: maxEntriesPerNode)
    }

    /// The tables of `machine` as they are now.
    public init(machine: any GuestMachine, scenario: Scenario, title: String, maxEntriesPerNode: Int = defaultMaxEntriesPerNode) {
        var builder = Builder(machine: machine, configuration: scenario.machine, maxEntries: max(1, maxEntriesPerNode))
        builder.addGuestTables()
        builder.addHypervisorTables()
        self.init(
            title: title, guestHeading: builder.guestHeading, hypervisorHeading: builder.hypervisorHeading, notes: builder.notes,
            nodes: builder.nodes, edges: builder.edges, roots: builder.roots, maxEntriesPerNode: builder.maxEntries)
    }
}

extension PageTableGraph {
    /// Collects nodes and edges side by side; `PageTableGraph+Guest.swift`
    /// and `PageTableGraph+Hypervisor.swift` walk the two sides.
    struct Builder {
        let machine: any GuestMachine
        let configuration: MachineConfiguration
        let maxEntries: Int
        var nodes: [Node] = []
        var nodeIndex: [String: Int] = [:]
        var edges: [Edge] = []
        var roots: [Root] = []
        var notes: [String] = []
        var guestHeading = "guest page tables"
        var hypervisorHeading: String?

        init(machine: any GuestMachine, configuration: MachineConfiguration, maxEntries: Int) {
            self.machine = machine
            self.configuration = configuration
            self.maxEntries = maxEntries
        }

        func has(_ id: String) -> Bool { nodeIndex[id] != nil }

        mutating func add(_ node: Node) {
            nodeIndex[node.id] = nodes.count
            nodes.append(node)
        }

        mutating func update(_ id: String, _ body: (inout Node) -> Void) {
            if let index = nodeIndex[id] { body(&nodes[index]) }
        }
    }
}
