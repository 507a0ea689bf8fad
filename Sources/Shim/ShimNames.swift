import Storage

/// Names derived from containerd's: the shim's socket, and the sandbox id rund uses for the
/// cgroup and the guest container. Both are pure functions of what containerd passes, so
/// `start`, the server and `delete` (which may run after the server died) agree on them.
public enum ShimNames {
    /// Where shims listen: containerd's Go shims hard-code the same directory.
    public static let socketDirectory = "/run/containerd/s"

    /// The annotations CRI puts in config.json: a container of a pod names the pod's sandbox.
    public static let sandboxIDAnnotation = "io.kubernetes.cri.sandbox-id"
    public static let containerTypeAnnotation = "io.kubernetes.cri.container-type"

    /// `unix://` + `/run/containerd/s/<sha256(address/namespace/group)>`, the Go shims'
    /// convention (82 bytes, well within sun_path).
    public static func socketPath(containerdAddress: String, namespace: String, group: String) -> String {
        socketDirectory + "/" + SHA256.hash(Array("\(containerdAddress)/\(namespace)/\(group)".utf8))
    }

    /// The shim that serves a container: the pod's (its sandbox id) for a CRI container, else
    /// its own.
    public static func group(id: String, annotations: [String: String]) -> String {
        if let sandbox = annotations[sandboxIDAnnotation], !sandbox.isEmpty { return sandbox }
        return id
    }

    /// rund's sandbox id for a containerd task: a hash of namespace and id (containerd ids may
    /// be longer than 64 characters, and ids repeat across namespaces), then as much of the id
    /// as fits, for people reading cgroup names.
    public static func sandboxID(namespace: String, id: String) -> String {
        let hash = SHA256.hash(Array("\(namespace)/\(id)".utf8)).prefix(12)
        let readable = id.unicodeScalars.filter {
            ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || "_.-".unicodeScalars.contains($0)
        }
        return "ctrd-\(hash)-" + String(String.UnicodeScalarView(readable).prefix(64 - 18))
    }
}
