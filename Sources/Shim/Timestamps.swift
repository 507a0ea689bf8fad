#if canImport(Glibc)
import Glibc
#endif
import SwiftProtobuf

extension Google_Protobuf_Timestamp {
    /// The wall-clock time now.
    static func now() -> Google_Protobuf_Timestamp {
        var time = timespec()
        clock_gettime(CLOCK_REALTIME, &time)
        var stamp = Google_Protobuf_Timestamp()
        stamp.seconds = Int64(time.tv_sec)
        stamp.nanos = Int32(truncatingIfNeeded: time.tv_nsec)
        return stamp
    }
}
