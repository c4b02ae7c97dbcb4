/// A record of what the hypervisor did while handling one fault, step by step
/// (for `shadowmmu explain`). Hand one to a fault entry point
/// (``ShadowMMU/ShadowMMU/pageFault(vcpu:address:access:hardwareErrorCode:trace:)``,
/// ``ShadowMMU/ShadowMMU/nestedPageFault(vcpu:address:access:trace:)``) to record that
/// fault; without one nothing is recorded and the fault path allocates nothing
/// for it.
public final class MMUTrace {
    /// The steps, in order.
    public private(set) var events: [MMUEvent] = []

    public init() {}

    func record(_ event: MMUEvent) { events.append(event) }
}
