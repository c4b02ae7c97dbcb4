// Runs one hot path in a loop and prints its time per operation, as a target
// for profilers (package-benchmark's harness would dominate their output):
//
//   swift build -c release --product HotPathProfile
//   valgrind --tool=callgrind .build/release/HotPathProfile walk 200000
//   perf record -g .build/release/HotPathProfile shadow-hit 50000000
//
// Paths: walk (4-level reference walk), hit (native TLB hit), shadow-hit,
// shadow-miss (hardware walk of shadow tables), fault (first-touch shadow
// fault, 4-level guest of 1 GiB), nested-vmrun-local|-local-eager|-special
// (row 9: a PAE L1's VMRUN and one L2 read, the root rebuilt under that design).
import BenchmarkGuests
import Glibc
import ShadowMMU
import X86Paging

let arguments = CommandLine.arguments
guard arguments.count == 3, let operations = Int(arguments[2]), operations > 0 else {
    print("usage: HotPathProfile walk|hit|shadow-hit|shadow-miss|fault <operations>")
    exit(2)
}

var sink: UInt64 = 0
let time: Double
switch arguments[1] {
case "walk":
    let guests = TLBGuests(pages: 512, tlbCapacity: 4096)
    let registers = guests.native.cpu.registers
    let memory = guests.native.memory
    time = nanoseconds {
        for iteration in 0..<operations {
            if case .translated(let translation) = Walker.walk(guests.address(iteration), .read, registers: registers, memory: memory) {
                sink &+= translation.physicalAddress
            }
        }
    }
case "hit":
    let guests = TLBGuests(pages: 64, tlbCapacity: 4096)
    let cpu = guests.native.cpu
    let memory = guests.native.memory
    time = nanoseconds {
        for iteration in 0..<operations {
            if case .physical(let address) = cpu.translate(guests.address(iteration), .read, memory: memory) { sink &+= address }
        }
    }
case "shadow-hit", "shadow-miss":
    let guests = arguments[1] == "shadow-hit" ? TLBGuests(pages: 64, tlbCapacity: 4096) : TLBGuests(pages: 4096, tlbCapacity: 1024)
    time = nanoseconds {
        for iteration in 0..<operations { sink &+= guests.shadow.read(guests.address(iteration)) }
    }
case "fault":
    var total = 0.0
    var done = 0
    while done < operations {
        let count = min(operations - done, 16384)
        let guest = ShadowGuest.firstTouch(mode: .level4, memorySize: 1 << 30, count: count)
        total += nanoseconds { for page in 0..<count { sink &+= guest.read(guest.linear(page: page)) } }
        done += count
    }
    time = total
case "nested-vmrun-local", "nested-vmrun-local-eager", "nested-vmrun-special":
    let roots: RootDesign = arguments[1].hasSuffix("special") ? .special : arguments[1].hasSuffix("eager") ? .localEager : .local
    let guest = NestedPAEGuest(roots: roots)
    sink = guest.enterAndRead()
    time = nanoseconds { for _ in 0..<operations { sink &+= guest.enterAndRead() } }
default:
    print("unknown path \(arguments[1])")
    exit(2)
}
print("\(arguments[1]): \(operations) operations, \((time / Double(operations) * 10).rounded() / 10) ns each (sink \(sink & 1))")
