import Foundation

/// One curve's measurements: a row per point, a column per figure, written
/// as CSV (the header names each figure with its unit) and read back by the
/// plotter. Values never contain commas, so no quoting is needed.
struct CurveTable {
    /// The file name without `.csv`: `guest-memory`, `processes`, `vcpus`.
    let name: String
    let columns: [String]
    private(set) var rows: [[String]] = []

    init(name: String, columns: [String]) {
        self.name = name
        self.columns = columns
    }

    mutating func append(_ values: [String]) {
        require(values.count == columns.count, "\(name): \(values.count) values for \(columns.count) columns")
        require(values.allSatisfy { !$0.contains(",") }, "\(name): a value holds a comma")
        rows.append(values)
    }

    var csv: String { ([columns] + rows).map { $0.joined(separator: ",") }.joined(separator: "\n") + "\n" }

    init(name: String, csv: String) throws {
        let lines = csv.split(separator: "\n").map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) }
        guard let header = lines.first else { throw CurveFileError("\(name).csv is empty") }
        self.name = name
        columns = header
        for line in lines.dropFirst() {
            guard line.count == header.count else { throw CurveFileError("\(name).csv: a row of \(line.count) fields under \(header.count) columns") }
            rows.append(line)
        }
    }

    /// The values of `column` in the rows where `filter` holds, as numbers.
    func numbers(_ column: String, where filter: ([String: String]) -> Bool = { _ in true }) throws -> [Double] {
        guard let index = columns.firstIndex(of: column) else { throw CurveFileError("\(name).csv has no column \(column)") }
        return try rows.filter { filter(record($0)) }.map { row in
            guard let value = Double(row[index]) else { throw CurveFileError("\(name).csv: \(column) is '\(row[index])', not a number") }
            return value
        }
    }

    /// The distinct values of `column`, in order of first appearance.
    func distinct(_ column: String) -> [String] {
        guard let index = columns.firstIndex(of: column) else { return [] }
        var seen: [String] = []
        for row in rows where !seen.contains(row[index]) { seen.append(row[index]) }
        return seen
    }

    private func record(_ row: [String]) -> [String: String] { Dictionary(uniqueKeysWithValues: zip(columns, row)) }
}

/// A curve file that cannot be read or plotted, with what is wrong with it.
struct CurveFileError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A figure for a CSV cell: integers as integers, others with `digits` decimals.
func cell(_ value: Double, digits: Int = 1) -> String {
    value == value.rounded() && abs(value) < 1e15 ? String(Int(value)) : String(format: "%.\(digits)f", value)
}

func cell(_ value: Int) -> String { String(value) }

/// The median of `values` (the mean of the middle two for an even count).
func median(_ values: [Double]) -> Double {
    require(!values.isEmpty, "the median of nothing")
    let sorted = values.sorted()
    let middle = sorted.count / 2
    return sorted.count.isMultiple(of: 2) ? (sorted[middle - 1] + sorted[middle]) / 2 : sorted[middle]
}

/// Stops the run with `message` when `condition` fails. Unlike
/// `precondition`, whose message a release build drops, this says which
/// check of which point failed.
func require(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String, file: StaticString = #fileID, line: UInt = #line) {
    if !condition() { fatalError(message(), file: file, line: line) }
}
