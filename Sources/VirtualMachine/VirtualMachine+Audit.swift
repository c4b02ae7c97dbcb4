import ShadowMMU
import X86Paging

extension VirtualMachine {
    /// The hardware TLBs against the shadow tables. Whenever KVM takes rights
    /// away from an spte — zaps it, write-protects it, resyncs it to what the
    /// guest now allows — it flushes the TLBs of every vCPU that may cache it
    /// before any of them runs again (`kvm_flush_remote_tlbs`; a missing one is
    /// a classic MMU bug). A stale *guest* translation is legal until the
    /// guest invalidates it, but that staleness lives in the sptes (unsync
    /// pages keep the old entry); the hardware's copy of an spte never
    /// outlives the spte.
    ///
    /// So, under shadow paging: every translation a vCPU's hardware TLB holds
    /// for the root it will run on next maps the same host frame as a walk of
    /// that root does now, with no right the walk does not give (write, user,
    /// execute) and with D set only where the walk finds it set. A vCPU whose
    /// next entry builds a new root needs no check: a new root is entered with
    /// a flushed TLB. Returns one line per translation that grants more.
    public func auditHardwareTLBs() -> [String] {
        guard !mmu.mode.isTDP else { return [] }
        var problems: [String] = []
        for vcpu in vcpus where vcpu.l1Paging == nil {
            guard let root = mmu.rootKeptAtEntry(vcpu: vcpu.index), vcpu.loadedRoot == root.serial,
                  // A supervisor read with no SMEP, SMAP or protection keys faults only
                  // where the tables map nothing; the rights come from the translation.
                  let probe = shadowHardwareRegisters(root: root, guest: vcpu.registers, guestProtections: false) else { continue }
            for entry in vcpu.tlb.usableEntries {
                let linear = entry.virtualPage << 12
                let cached = "vCPU \(vcpu.index)'s hardware TLB maps \(linear.hex) to \(entry.physicalAddress(of: linear).hex) (\(entry.rights)\(entry.dirty ? ", dirty" : ""))"
                guard case .translated(let now) = Walker.walk(linear, .read, registers: probe, memory: host, setAccessedDirty: false) else {
                    problems.append("\(cached), but its shadow tables no longer map that page: a zap without a TLB flush")
                    continue
                }
                let granted = now.rights
                let more = entry.physicalAddress(of: linear) != now.physicalAddress
                    || entry.rights.writable && !granted.writable
                    || entry.rights.user && !granted.user
                    || !entry.rights.executeDisable && granted.executeDisable
                    || entry.dirty && entry.rights.writable && !now.dirty
                if more {
                    problems.append("\(cached), but its shadow tables now give \(now.physicalAddress.hex) (\(granted)\(now.dirty ? ", dirty" : "")): rights taken away without a TLB flush")
                }
            }
        }
        return problems
    }
}
