import X86Paging

/// How an L2 access that L1's second stage refused is delivered to L1: the
/// contract's `result` word for it and the field that carries its exit
/// information.
public enum NestedFaultKind: String, Sendable, Equatable, CaseIterable, CustomStringConvertible {
    /// AMD: a #NPF exit, EXITINFO1 in `exit_info_1`.
    case npf
    /// Intel: an EPT violation, the exit qualification in `qualification`.
    case eptViolation = "ept-violation"
    /// Intel: an EPT misconfiguration (no exit information).
    case eptMisconfig = "ept-misconfig"

    public init(_ kind: NestedFault.Kind) {
        switch kind {
        case .nestedPageFault: self = .npf
        case .eptViolation: self = .eptViolation
        case .eptMisconfiguration: self = .eptMisconfig
        }
    }

    public var description: String { rawValue }

    /// The output field that carries the exit information; nil for a misconfiguration.
    public var informationField: String? {
        switch self {
        case .npf: "exit_info_1"
        case .eptViolation: "qualification"
        case .eptMisconfig: nil
        }
    }

    /// The `expect` option that checks the exit information (`info=` or `qualification=`).
    public var expectationKey: String? {
        switch self {
        case .npf: "info"
        case .eptViolation: "qualification"
        case .eptMisconfig: nil
        }
    }

    /// The exit information's name in prose.
    public var informationName: String { self == .npf ? "EXITINFO1" : "exit qualification" }
}

extension NestedFault {
    /// The contract's `result` word for this fault.
    public var result: NestedFaultKind { NestedFaultKind(kind) }

    /// EXITINFO1 or the exit qualification; nil for a misconfiguration.
    public var information: UInt64? {
        switch kind {
        case .nestedPageFault(let info): info
        case .eptViolation(let qualification): qualification
        case .eptMisconfiguration: nil
        }
    }
}
