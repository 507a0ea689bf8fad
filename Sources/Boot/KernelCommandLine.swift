/// The kernel command line rund passes by default, plus validation of user additions.
public enum KernelCommandLine {
    /// Serial console, reboot through the keyboard controller, no panic wait, no slow probes.
    public static let defaultArguments =
        "console=ttyS0 reboot=k panic=-1 i8042.noaux i8042.nomux i8042.nopnp "
        + "i8042.dumbkbd 8250.nr_uarts=1 cryptomgr.notests init_on_alloc=0 pci=off"

    // pci=off: there is no PCI bus; without it the kernel logs "PCI: Fatal: No config space access".

    /// Longest line in bytes, excluding the NUL (`X86Layout.commandLineCapacity` - 1).
    public static let maximumLength = X86Layout.commandLineCapacity - 1

    /// The default arguments followed by `extra` (if any), validated.
    public static func build(extra: String? = nil) throws(BootError) -> String {
        var line = defaultArguments
        if let extra, !extra.allSatisfy({ $0 == " " }) {
            line += " " + extra
        }
        try validate(line)
        return line
    }

    /// Throws unless `line` fits in `maximum` bytes and holds no NUL.
    public static func validate(_ line: String, maximum: Int = maximumLength) throws(BootError) {
        let bytes = line.utf8
        guard !bytes.contains(0) else { throw .commandLineContainsNUL }
        guard bytes.count <= maximum else { throw .commandLineTooLong(length: bytes.count, maximum: maximum) }
    }
}
