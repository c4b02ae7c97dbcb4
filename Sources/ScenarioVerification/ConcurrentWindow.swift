import Dispatch
import Foundation

/// Checks run concurrently a window at a time and handed back in the order
/// they were given, so that whatever is printed from them is what one job
/// prints (`shadowmmu fuzz --jobs N`, `shadowmmu check --jobs N`).
///
/// With one job each item is announced, performed and visited before the
/// next is taken. With `jobs` > 1, `4 × jobs` items are taken, performed by
/// at most `jobs` workers (whatever the cores), then announced and visited
/// in order; the window keeps every worker busy while items differ in cost,
/// and bounds the results held at once.
public struct ConcurrentWindow: Sendable {
    /// Whether the work goes on after an item is visited.
    public enum Next: Sendable { case proceed, stop }

    /// Items performed at once, at most.
    public let jobs: Int

    public init(jobs: Int) { self.jobs = max(1, jobs) }

    /// Items taken from the sequence before any of them is visited.
    public var size: Int { jobs == 1 ? 1 : jobs * 4 }

    /// Performs every item of `items` and visits each result in the items'
    /// order until `visit` says stop. `announce` tells of an item before it
    /// is performed when there is one job (a progress line then shows what
    /// runs), else before it is visited. Items after a stop may have been
    /// performed, never visited.
    public func run<Item: Sendable, Outcome>(
        _ items: some Sequence<Item>,
        announce: (Item) throws -> Void = { _ in },
        perform: @Sendable (Item) -> Outcome,
        visit: (Item, Outcome) throws -> Next
    ) throws {
        var iterator = items.makeIterator()
        while true {
            var batch: [Item] = []
            while batch.count < size, let item = iterator.next() { batch.append(item) }
            guard !batch.isEmpty else { return }
            if size == 1 { try announce(batch[0]) }
            let outcomes = performAll(batch, perform)
            for (item, outcome) in zip(batch, outcomes) {
                if size > 1 { try announce(item) }
                if try visit(item, outcome) == .stop { return }
            }
        }
    }

    /// `perform` on every item of `batch`, on up to `jobs` threads; the
    /// outcomes in the batch's order.
    private func performAll<Item: Sendable, Outcome>(_ batch: [Item], _ perform: @Sendable (Item) -> Outcome) -> [Outcome] {
        guard batch.count > 1 else { return batch.map(perform) }
        let slots = OutcomeSlots<Outcome>(count: batch.count)
        // `workers` threads, each taking the next item not yet taken until
        // none is left: at most `jobs` items are performed at once, and a
        // worker that drew short items takes more (a check that meets a
        // deviation runs again with fixes, several times longer).
        let workers = min(jobs, batch.count)
        DispatchQueue.concurrentPerform(iterations: workers) { _ in
            while let position = slots.take() { slots.set(position, perform(batch[position])) }
        }
        return slots.values
    }
}

/// Outcomes filled in by concurrent workers, one slot each, handed out in
/// order and read after they have all finished (`concurrentPerform`
/// returns only then). An outcome
/// (a report holding the machine it ran on) need not be `Sendable`: each is
/// written by one worker and read only after every worker is done.
private final class OutcomeSlots<Value>: @unchecked Sendable {
    private var slots: [Value?]
    private var taken = 0
    private let lock = NSLock()

    init(count: Int) { slots = Array(repeating: nil, count: count) }

    /// The next slot no worker has taken, or nil when every one has been.
    func take() -> Int? {
        lock.lock()
        defer { lock.unlock() }
        guard taken < slots.count else { return nil }
        taken += 1
        return taken - 1
    }

    func set(_ position: Int, _ value: Value) {
        lock.lock()
        slots[position] = value
        lock.unlock()
    }

    var values: [Value] { slots.map { $0! } }
}
