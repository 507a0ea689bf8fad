#if canImport(Glibc)
import Glibc
#endif
import Shim

// containerd's runtime v2 shim for rund (runtime io.containerd.rund.v2): all of it is in Shim.
exit(await ShimMain.run(Array(CommandLine.arguments.dropFirst())))
