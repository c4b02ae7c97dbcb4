import X86Paging
import ScenarioLanguage

/// What one observable command produced: the value the contract prints as a
/// JSON line, and what `expect` lines check.
public struct Observation: Sendable, Equatable {
    public var line: Int
    public var vcpu: Int
    public var event: Event

    public init(line: Int, vcpu: Int, event: Event) {
        self.line = line
        self.vcpu = vcpu
        self.event = event
    }

    public enum Event: Sendable, Equatable {
        case access(AccessCommand, AccessOutcome)
        case peek(address: UInt64, value: UInt64)
        /// A register write; printed only when rejected.
        case registerWrite(RegisterName, accepted: Bool)
        case dirtyLog(gfns: [UInt64])
    }

    /// Whether the contract prints a line for this observation.
    public var isPrinted: Bool {
        if case .registerWrite(_, let accepted) = event { return !accepted }
        return true
    }

    /// The contract's JSON object for this observation (field order fixed).
    public var json: String {
        var fields: [(String, JSONValue)] = [("line", .number(line)), ("vcpu", .number(vcpu))]
        switch event {
        case .access(let command, let outcome):
            fields.append(("op", .string(command.kind.rawValue)))
            fields.append(("gva", .hex(command.address)))
            fields.append(("user", .bool(command.user)))
            switch outcome {
            case .ok(let gpa, let value):
                fields.append(("result", .string("ok")))
                fields.append(("gpa", .hex(gpa)))
                if let value { fields.append(("value", .hex(value))) }
            case .pageFault(let code):
                fields.append(("result", .string("fault")))
                fields.append(("vector", .number(14)))
                fields.append(("error_code", .hex(code)))
            case .generalProtection:
                fields.append(("result", .string("gp")))
            case .nestedFault(let fault):
                fields.append(("result", .string(fault.result.rawValue)))
                fields.append(("gpa", .hex(fault.guestPhysicalAddress)))
                if let info = fault.information, let field = fault.result.informationField { fields.append((field, .hex(info))) }
            }
        case .peek(let address, let value):
            fields += [("op", .string("peek")), ("addr", .hex(address)), ("value", .hex(value))]
        case .registerWrite(let name, let accepted):
            fields += [("op", .string(name.rawValue)), ("result", .string(accepted ? "ok" : "gp"))]
        case .dirtyLog(let gfns):
            fields += [("op", .string("dirty-log")), ("gfns", .array(gfns.map { .hex($0) }))]
        }
        return JSONValue.object(fields).encoded
    }
}

/// How an access ended, as the guest sees it.
public enum AccessOutcome: Sendable, Equatable {
    /// Completed at guest physical address `gpa`; a read reports `value`.
    case ok(gpa: UInt64, value: UInt64?)
    /// A page fault was delivered to the guest with this error code.
    case pageFault(errorCode: UInt64)
    /// A #GP was delivered to the guest.
    case generalProtection
    /// An L2 access ended in a fault delivered to the L1 hypervisor (#NPF,
    /// EPT violation or misconfiguration) at an L2-physical address.
    case nestedFault(NestedFault)

    public var summary: String {
        switch self {
        case .ok(let gpa, let value): "ok gpa=\(gpa.hex)" + (value.map { " value=\($0.hex)" } ?? "")
        case .pageFault(let code): "fault ec=\(code.hex)"
        case .generalProtection: "gp"
        case .nestedFault(let fault): "\(fault.result) gpa=\(fault.guestPhysicalAddress.hex)" + (fault.information.map { " \(fault.result.expectationKey ?? "info")=\($0.hex)" } ?? "")
        }
    }
}

/// A minimal JSON writer with ordered object fields.
public indirect enum JSONValue: Sendable, Equatable {
    case number(Int)
    case string(String)
    /// An address or register value: printed as a `0x…` lowercase string.
    case hex(UInt64)
    case bool(Bool)
    case null
    case array([JSONValue])
    case object([(String, JSONValue)])

    public static func == (a: JSONValue, b: JSONValue) -> Bool { a.encoded == b.encoded }

    public var encoded: String {
        switch self {
        case .number(let value): String(value)
        case .string(let value): Self.quote(value)
        case .hex(let value): "\"\(value.hex)\""
        case .bool(let value): value ? "true" : "false"
        case .null: "null"
        case .array(let items): "[" + items.map(\.encoded).joined(separator: ",") + "]"
        case .object(let fields): "{" + fields.map { Self.quote($0.0) + ":" + $0.1.encoded }.joined(separator: ",") + "}"
        }
    }

    static func quote(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 {
                    out += "\\u" + String(repeating: "0", count: 4 - String(scalar.value, radix: 16).count) + String(scalar.value, radix: 16)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}
