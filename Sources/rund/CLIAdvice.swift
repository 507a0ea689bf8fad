import Boot
import Cgroups
import Network
import Sandbox
import Storage
import VMM

/// The libraries say what went wrong in their own terms; what a user of this CLI can change
/// about it (which option) is added here.
enum CLIAdvice {
    static func advice(for error: any Error) -> String? {
        switch error {
        case let error as BootError:
            switch error {
            case .kernelDoesNotFit, .initrdDoesNotFit, .memoryTooSmall, .guestMemory: return "raise --memory"
            case .commandLineTooLong: return "shorten --cmdline"
            case .commandLineContainsNUL: return "remove the NUL byte from --cmdline"
            case .invalidVCPUCount: return "change --vcpus"
            default: return nil
            }
        case let error as VMError:
            switch error {
            case .vcpuCountOutOfRange: return "change --vcpus"
            case .memoryTooSmall, .memoryTooLarge: return "change --memory"
            case .fileTooLarge: return "raise --memory"
            case .tooManyDisks: return "attach fewer disks or pmem images"
            case .badPmemImage: return "pass an image padded to whole 4 KiB pages to --pmem"
            case .stallTimeoutTooShort: return "raise --stall-timeout"
            default: return nil
            }
        case let error as StorageError:
            switch error.kind {
            case .registryTimedOut: return "check the registry, or raise --timeout"
            case .registryUnreachable: return "check the address, or use --insecure for a plain-HTTP registry"
            case .notInStore: return "see `rund image ls`"
            case .hostUnsupported: return "run `rund doctor`"
            default: return nil
            }
        case let error as SandboxError:
            switch error.kind {
            case .cannotConfine: return "pass --unconfined to run it without a cgroup"
            case .agentUnresponsive: return "pass --console FILE to see the guest's console"
            case .agentMissing: return "build rund-agent, or pass --agent"
            case .noCommand: return "give the command after --"
            case .kernelCacheBroken: return "run scripts/setup"
            case .failed: return nil
            }
        case let error as CgroupError where error.kind == .noHierarchy:
            return "see `rund doctor`"
        case is NetworkError:
            return "see `rund doctor` (networks), or run with --network none"
        default:
            return nil
        }
    }

    /// "rund: <error>; <advice>", on one line.
    static func line(for error: any Error) -> String {
        let text = "\(error)".split(whereSeparator: \.isNewline).joined(separator: " ")
        return "rund: " + text + (advice(for: error).map { "; " + $0 } ?? "")
    }
}
