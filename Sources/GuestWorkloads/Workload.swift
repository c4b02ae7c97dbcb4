import KVMCatalogue
import ShadowMMU
import X86Paging
import ScenarioLanguage
import ScenarioRuntime

/// The named workloads of `shadowmmu workload`: guest behaviour a real kernel
/// produces, run step by step by `GuestKernel` on a machine and recorded as a
/// scenario.
public enum WorkloadName: String, CaseIterable, Sendable, CustomStringConvertible {
    /// Boot: the direct map and kernel mappings, paging on, memory initialised, init runs.
    case boot
    /// Several processes with demand paging and context switches between them.
    case processes
    /// A shell that forks children which write (copy-on-write), exec and exit.
    case fork
    /// Anonymous mappings touched, unmapped (with invalidation), touched again.
    case munmap
    /// Huge-page mappings: faults, accesses across them, unmapping, reuse.
    case hugepages
    /// Idle and busy processes mixed with forks, execs, exits, mmap and munmap.
    case mix

    public var description: String { rawValue }

    /// What `--size` counts for this workload.
    public var sizeMeaning: String {
        switch self {
        case .boot: "memory-map pages the kernel initialises"
        case .processes, .mix: "processes"
        case .fork: "forks"
        case .munmap: "pages mapped and unmapped per round"
        case .hugepages: "huge pages"
        }
    }

    /// The largest `--size` count this workload runs in a `mode` guest.
    ///
    /// Two bounds. The simulation's own memory grows with the count (guest
    /// tables, shadow pages, the recorded scenario): each cap keeps a run with
    /// `--emit` under about 1 GB. Measured at the caps on a debug build with
    /// --emit: boot 200000 pages 190 MB, processes 3000 890 MB, fork 500
    /// 560 MB (fork grows faster than the count: the shell a fork copies
    /// keeps growing, 1000 forks took 1.6 GB), mix 500 260 MB; munmap and
    /// hugepages take about 10 and 30 KB a page. And a huge-page pool must
    /// fit in the guest memory the mode can map, beside 32 MiB for the kernel
    /// and the small pages.
    public func maximumCount(in mode: GuestPagingLayout.Mode) -> Int {
        min(simulationLimit, poolLimit(in: mode) ?? .max)
    }

    /// The bound on the simulation's memory (see `maximumCount(in:)`).
    var simulationLimit: Int {
        switch self {
        case .boot: 200_000
        case .processes: 3_000
        case .fork: 500
        case .munmap: 50_000
        case .hugepages: 20_000
        case .mix: 500
        }
    }

    /// The most huge pages (hugepages) or processes (mix) whose huge-page pool
    /// fits in a `mode` guest's memory; nil for a workload without a pool.
    func poolLimit(in mode: GuestPagingLayout.Mode) -> Int? {
        let beyond = Workload.hugeFramesBeyondScale(self)
        guard beyond > 0 else { return nil }
        let layout = GuestPagingLayout(mode: mode)
        return Int((layout.maximumMemory - Workload.kernelReserve) / layout.hugePageSize) - beyond
    }

    /// The scale of each preset size.
    func scale(_ size: WorkloadSize) -> Int {
        let presets: (Int, Int, Int) = switch self {
        case .boot: (64, 512, 4096)
        case .processes: (3, 8, 32)
        case .fork: (2, 8, 32)
        case .munmap: (16, 64, 256)
        case .hugepages: (2, 8, 32)
        case .mix: (3, 8, 16)
        }
        switch size {
        case .small: return presets.0
        case .medium: return presets.1
        case .large: return presets.2
        case .count(let count): return count
        }
    }
}

/// `--size`: a preset or a count (of what, each workload says).
public enum WorkloadSize: Equatable, Sendable, CustomStringConvertible {
    case small, medium, large
    case count(Int)

    public init?(argument: String) {
        switch argument.lowercased() {
        case "small": self = .small
        case "medium": self = .medium
        case "large": self = .large
        default:
            // The workload bounds the count (`WorkloadName.maximumCount(in:)`).
            guard let count = Int(argument), count >= 1 else { return nil }
            self = .count(count)
        }
    }

    public var description: String {
        switch self {
        case .small: "small"
        case .medium: "medium"
        case .large: "large"
        case .count(let count): String(count)
        }
    }
}

/// How a workload or a trace replay runs.
public struct WorkloadOptions: Sendable {
    public var mode: GuestPagingLayout.Mode
    public var mmu: MMUConfiguration
    public var size: WorkloadSize
    public var seed: UInt64
    /// Keep the scenario text (for `--emit` and `--check`).
    public var record: Bool
    /// KVM deviations the hypervisor's MMU makes architectural.
    public var fixes: Set<Deviation>

    public init(mode: GuestPagingLayout.Mode = .level4, mmu: MMUConfiguration = .shadow(host: .bits64),
                size: WorkloadSize = .small, seed: UInt64 = 1, record: Bool = true, fixes: Set<Deviation> = []) {
        self.mode = mode
        self.mmu = mmu
        self.size = size
        self.seed = seed
        self.record = record
        self.fixes = fixes
    }

    /// Why the options cannot run, with what to do instead; nil when they can.
    public var problem: String? {
        switch mmu {
        case .shadow(.pae32, _) where mode.isLongMode, .tdp(_, _, .pae32, _) where mode.isLongMode:
            return "a 32-bit PAE host cannot run a \(mode) guest: use --mode 32-bit or --mode pae with this --mmu, or a 64-bit host's --mmu"
        default:
            return nil
        }
    }
}

/// The `--mmu` names: one word per configuration the checker knows.
public enum MMUName {
    public static let all: [(String, MMUConfiguration)] = [
        ("native", .native),
        ("shadow", .shadow(host: .bits64)),
        ("shadow-pae32", .shadow(host: .pae32)),
        ("tdp-ept", .tdp(format: .ept, levels: 4, host: .bits64)),
        ("tdp-ept5", .tdp(format: .ept, levels: 5, host: .bits64)),
        ("tdp-npt", .tdp(format: .npt, levels: 4, host: .bits64)),
        ("tdp-npt5", .tdp(format: .npt, levels: 5, host: .bits64)),
        ("tdp-npt-pae32", .tdp(format: .npt, levels: 3, host: .pae32)),
    ]

    public static func configuration(named name: String) -> MMUConfiguration? {
        all.first { $0.0 == name }?.1
    }

    public static var names: String { all.map(\.0).joined(separator: ", ") }
}

/// What a workload run did: the guest kernel's counters, the machine's
/// statistics, and the scenario it was recorded as.
public struct WorkloadRun {
    /// `fork`, `trace FILE`, …
    public var title: String
    public var options: WorkloadOptions
    public var memorySize: UInt64
    public var kernel: GuestKernel.Counters
    /// Counters of a trace replay (accesses replayed, pages touched).
    public var trace: [(String, Int)]
    /// The machine's counters (`shadowmmu run --stats`).
    public var statistics: MachineStatistics
    public var commands: Int
    public var accesses: Int
    /// The recorded scenario (when recording).
    public var scenario: String?
    /// Set when the guest kernel stopped: the machine broke the architecture,
    /// or the workload could not run as asked.
    public var failure: KernelPanic?
}

public enum Workload {
    /// Runs workload `name`, reporting progress as (steps done, steps in all).
    public static func run(
        _ name: WorkloadName, options: WorkloadOptions,
        progress: ((Int, Int) -> Void)? = nil, log: ((String) -> Void)? = nil
    ) -> WorkloadRun {
        if let problem = problem(name, options: options) {
            return WorkloadRun(
                title: name.rawValue, options: options, memorySize: 0, kernel: .init(), trace: [], statistics: MachineStatistics(),
                commands: 0, accesses: 0, scenario: nil, failure: KernelPanic(.unusable, problem))
        }
        let layout = GuestPagingLayout(mode: options.mode)
        let scale = max(1, name.scale(options.size))
        let hugeFrames = hugeFramesBeyondScale(name) == 0 ? 0 : scale + hugeFramesBeyondScale(name)
        let memory = memorySize(for: name, scale: scale, size: options.size, layout: layout, hugeFrames: hugeFrames)
        return session(
            title: name.rawValue, options: options, memory: memory, hugeFrames: hugeFrames, log: log,
            header: ["workload \(name) --mode \(options.mode) --size \(options.size) --seed \(options.seed)",
                     "written by `shadowmmu workload`: a guest kernel's actions, each access followed by its result"]
        ) { kernel throws(KernelPanic) in
            try script(name, kernel: kernel, scale: scale, progress: progress ?? { _, _ in })
        }
    }

    /// Why `name` cannot run with `options`, with what to do instead; nil
    /// when it can (the size within `maximumCount(in:)`, the mode on the host).
    public static func problem(_ name: WorkloadName, options: WorkloadOptions) -> String? {
        if let problem = options.problem { return problem }
        let maximum = name.maximumCount(in: options.mode)
        guard name.scale(options.size) <= maximum else {
            let reason = maximum < name.simulationLimit
                ? "the huge-page pool must fit in the guest's \(GuestPagingLayout(mode: options.mode).maximumMemory >> 20) MiB"
                : "the simulation's memory grows with the count; this keeps it under about 1 GB"
            return "--size \(options.size) is too large for \(name) in a \(options.mode) guest: at most \(maximum) \(name.sizeMeaning) (\(reason))"
        }
        return nil
    }

    /// Memory the guest kernel keeps beside a huge-page pool.
    static let kernelReserve: UInt64 = 32 << 20

    /// Huge frames the pool holds beyond the scale (none: no pool).
    static func hugeFramesBeyondScale(_ name: WorkloadName) -> Int {
        switch name {
        case .hugepages: 1
        case .mix: 4
        default: 0
        }
    }

    /// Guest memory for a run: the preset's, grown for large counts, within what the mode can map.
    static func memorySize(for name: WorkloadName, scale: Int, size: WorkloadSize, layout: GuestPagingLayout, hugeFrames: Int) -> UInt64 {
        let preset: UInt64 = switch size {
        case .small: 64 << 20
        case .medium: 256 << 20
        case .large, .count: 512 << 20
        }
        let perUnit: UInt64 = switch name {
        case .boot: 0
        case .processes, .fork: 2 << 20
        case .mix: 4 << 20
        case .munmap: 8 << 10
        case .hugepages: 0
        }
        var needed = kernelReserve + UInt64(scale) * perUnit + UInt64(hugeFrames) * layout.hugePageSize
        needed = (needed + (32 << 20) - 1) & ~((32 << 20) - 1)
        let wanted = if case .count = size { needed } else { max(preset, needed) }
        return min(max(wanted, 64 << 20), layout.maximumMemory)
    }

    /// Boots a kernel on a fresh machine, runs `body`, and collects the outcome.
    static func session(
        title: String, options: WorkloadOptions, memory: UInt64, hugeFrames: Int, log: ((String) -> Void)?,
        header: [String], trace: @escaping () -> [(String, Int)] = { [] },
        _ body: (GuestKernel) throws(KernelPanic) -> Void
    ) -> WorkloadRun {
        let configuration = MachineConfiguration(memorySize: memory)
        var run = WorkloadRun(
            title: title, options: options, memorySize: memory, kernel: .init(), trace: [], statistics: MachineStatistics(),
            commands: 0, accesses: 0, scenario: nil, failure: nil)
        if let problem = options.problem {
            run.failure = KernelPanic(.unusable, problem)
            return run
        }
        let recorder: ScenarioRecorder
        do {
            recorder = try ScenarioRecorder(configuration: configuration, mmu: options.mmu, header: header, recording: options.record)
            recorder.machine.hypervisor?.configure(regressions: [], fixes: options.fixes, emulatedSupervisor: false)
        } catch {
            run.failure = KernelPanic(.unusable, error.message)
            return run
        }
        let kernel = GuestKernel(layout: GuestPagingLayout(mode: options.mode), recorder: recorder, seed: options.seed, hugeFrames: hugeFrames)
        kernel.log = log
        do {
            try kernel.boot()
            try body(kernel)
        } catch {
            run.failure = error
            recorder.comment("the guest kernel stopped here: \(error)")
        }
        run.kernel = kernel.counters
        run.trace = trace()
        run.statistics = recorder.machine.statistics
        run.commands = recorder.commandCount
        run.accesses = recorder.accessCount
        run.scenario = options.record ? recorder.text : nil
        return run
    }

    static func script(_ name: WorkloadName, kernel: GuestKernel, scale: Int, progress: (Int, Int) -> Void) throws(KernelPanic) {
        switch name {
        case .boot:
            let chunk = 64
            var done = 0
            while done < scale {
                let pages = min(chunk, scale - done)
                try kernel.initialiseMemoryMap(pages: pages, first: done, of: scale)
                done += pages
                progress(done, scale + 1)
            }
            let initProcess = try kernel.spawn(binary: 1)
            try kernel.run(initProcess, accesses: 32, newPages: 4)
            progress(scale + 1, scale + 1)

        case .processes:
            var processes: [GuestProcessHandle] = []
            for index in 0..<scale { processes.append(try kernel.spawn(binary: 1 + index % 2)) }
            let rounds = 4
            for round in 0..<rounds {
                for (index, process) in processes.enumerated() {
                    try kernel.run(process, accesses: 40, newPages: round == 0 ? 8 : 2)
                    progress(round * scale + index + 1, rounds * scale)
                }
            }

        case .fork:
            let shell = try kernel.spawn(binary: 1)
            try kernel.run(shell, accesses: 60, newPages: 12)
            for index in 0..<scale {
                let child = try kernel.fork(shell)
                if index % 2 == 0 {
                    // The child writes first: it copies; the parent then owns its pages alone.
                    try kernel.run(child, accesses: 30)
                    try kernel.run(shell, accesses: 20)
                } else {
                    try kernel.run(shell, accesses: 20)
                    try kernel.run(child, accesses: 20)
                }
                try kernel.exec(child, binary: 2 + index % 2)
                try kernel.run(child, accesses: 30, newPages: 4)
                try kernel.exit(child)
                try kernel.run(shell, accesses: 20, newPages: 1)
                progress(index + 1, scale)
            }

        case .munmap:
            let process = try kernel.spawn(binary: 1)
            try kernel.run(process, accesses: 20, newPages: 2)
            let rounds = 2
            for round in 0..<rounds {
                let start = try kernel.mmapAnonymous(process, pages: scale)
                for page in 0..<scale {
                    try kernel.userAccess(.write, start + UInt64(page) << 12 + UInt64(page % 512) * 8, value: UInt64(round << 32 | page + 1))
                }
                let half = max(1, scale / 2)
                try kernel.munmap(process, start, length: UInt64(half) << 12)
                // The process touches what it unmapped: SIGSEGV.
                try kernel.userAccess(.read, start)
                for page in half..<scale { try kernel.userAccess(.read, start + UInt64(page) << 12 + UInt64(page % 512) * 8) }
                if half < scale { try kernel.munmap(process, start + UInt64(half) << 12, length: UInt64(scale - half) << 12) }
                try kernel.run(process, accesses: 20, newPages: 1)
                progress(round + 1, rounds)
            }

        case .hugepages:
            let process = try kernel.spawn(binary: 1)
            try kernel.run(process, accesses: 20, newPages: 2)
            let size = kernel.layout.hugePageSize
            let start = try kernel.mmapHuge(process, count: scale)
            for index in 0..<scale {
                for _ in 0..<4 { try kernel.touch(start + UInt64(index) * size + kernel.random.next(below: size >> 3) * 8) }
                progress(index + 1, scale * 2)
            }
            try kernel.run(process, accesses: 40)
            let half = max(1, scale / 2)
            try kernel.munmap(process, start, length: UInt64(half) * size)
            try kernel.userAccess(.read, start)
            let again = try kernel.mmapHuge(process, count: half)
            for index in 0..<half {
                for _ in 0..<4 { try kernel.touch(again + UInt64(index) * size + kernel.random.next(below: size >> 3) * 8) }
                progress(scale + index + 1, scale * 2)
            }

        case .mix:
            try mix(kernel: kernel, processes: scale, progress: progress)
        }
    }

    /// Busy and idle periods with forks, execs, exits, mmap and munmap, chosen at random.
    static func mix(kernel: GuestKernel, processes count: Int, progress: (Int, Int) -> Void) throws(KernelPanic) {
        var live: [GuestProcessHandle] = []
        for index in 0..<count { live.append(try kernel.spawn(binary: 1 + index % 3)) }
        let ticks = count * 12
        func pick() -> GuestProcessHandle { live[kernel.random.next(below: live.count)] }
        for tick in 0..<ticks {
            let roll = kernel.random.next(below: 100)
            switch roll {
            case 0..<55:
                try kernel.run(pick(), accesses: 10 + kernel.random.next(below: 30), newPages: kernel.random.next(below: 3))
            case 55..<70:
                try kernel.idle()
            case 70..<80 where live.count < 2 * count:
                let child = try kernel.fork(pick())
                live.append(child)
                try kernel.run(child, accesses: 15)
                if kernel.random.next(below: 2) == 0 {
                    try kernel.exec(child, binary: 1 + kernel.random.next(below: 3))
                    try kernel.run(child, accesses: 10, newPages: 2)
                }
            case 80..<86 where live.count > 1:
                let victim = pick()
                live.removeAll { $0.pid == victim.pid }
                try kernel.exit(victim)
            case 86..<94:
                let process = pick()
                let pages = 8 + kernel.random.next(below: 24)
                let start = try kernel.mmapAnonymous(process, pages: pages)
                try kernel.switchTo(process)
                for page in 0..<pages where kernel.random.next(below: 3) != 0 { try kernel.touch(start + UInt64(page) << 12) }
                try kernel.munmap(process, start, length: UInt64(pages / 2) << 12)
            default:
                let process = pick()
                guard kernel.allocator.hugeFramesFree > 0 else {
                    try kernel.idle()
                    break
                }
                let start = try kernel.mmapHuge(process, count: 1)
                try kernel.switchTo(process)
                try kernel.touch(start + kernel.random.next(below: kernel.layout.hugePageSize >> 3) * 8)
                if kernel.random.next(below: 2) == 0 { try kernel.munmap(process, start, length: kernel.layout.hugePageSize) }
            }
            progress(tick + 1, ticks)
        }
    }
}
