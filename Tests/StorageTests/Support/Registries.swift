import Foundation
import HostOS
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// A free TCP port on 127.0.0.1 (bound once to learn it, then released).
func freePort() throws -> UInt16 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
    _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
    return UInt16(bigEndian: address.sin_port)
}

/// Debian's `docker-registry` (distribution v2) on 127.0.0.1, storage in a temp dir; always stopped.
final class LocalRegistry {
    let address: String
    private let process: Process
    private let directory: TemporaryDirectory

    /// The port is free when picked but not held: another test may bind it first, and then
    /// docker-registry exits; it is started again on another port (three tries).
    init() throws {
        directory = try TemporaryDirectory("rund-registry")
        var lastAddress = ""
        for _ in 0..<3 {
            let address = "127.0.0.1:\(try freePort())"
            let config = """
                version: 0.1
                log:
                  level: error
                storage:
                  filesystem:
                    rootdirectory: \(directory.path)/data
                  delete:
                    enabled: true
                http:
                  addr: \(address)
                """
            let configPath = try directory.write("config.yml", Array(config.utf8))
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/docker-registry")
            process.arguments = ["serve", configPath]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            for _ in 0..<300 where process.isRunning {
                let probe = try? Subprocess.run(["skopeo", "list-tags", "--tls-verify=false", "docker://\(address)/probe"])
                if probe?.stderrText.contains("connection refused") == false && process.isRunning {
                    self.address = address
                    self.process = process
                    return
                }
                usleep(100_000)
            }
            if process.isRunning {
                process.terminate()
                process.waitUntilExit()
            }
            lastAddress = address
        }
        throw StorageTestError("docker-registry did not start (last on \(lastAddress))")
    }

    /// Pushes an OCI layout tarball with skopeo (`all` keeps every platform of an index).
    func push(_ archive: String, as name: String, all: Bool = false) throws {
        try Subprocess.checked(
            ["skopeo", "copy", "-q"] + (all ? ["--all"] : []) + [
                "--dest-tls-verify=false",
                "oci-archive:" + archive, "docker://\(address)/\(name)",
            ])
    }

    /// Pushes blobs and a manifest through the registry API itself (skopeo would gzip
    /// uncompressed layers on the way): monolithic blob uploads, then PUT of the manifest.
    func pushRaw(name: String, tag: String, blobs: [[UInt8]], manifest: [UInt8], mediaType: String) async throws {
        let session = URLSession(configuration: .ephemeral)
        defer { session.finishTasksAndInvalidate() }
        let base = "http://\(address)/v2/\(name)"
        for blob in blobs {
            var start = URLRequest(url: URL(string: base + "/blobs/uploads/")!)
            start.httpMethod = "POST"
            let (_, started) = try await session.data(for: start)
            guard let location = (started as? HTTPURLResponse)?.value(forHTTPHeaderField: "Location") else {
                throw StorageTestError("registry gave no upload location")
            }
            let absolute = location.hasPrefix("http") ? location : "http://\(address)" + location
            let separator = absolute.contains("?") ? "&" : "?"
            var put = URLRequest(url: URL(string: absolute + separator + "digest=" + Fixtures.digest(blob))!)
            put.httpMethod = "PUT"
            put.setValue("application/octet-stream", forHTTPHeaderField: "Content-Type")
            let (_, done) = try await session.upload(for: put, from: Data(blob))
            guard (done as? HTTPURLResponse)?.statusCode == 201 else { throw StorageTestError("blob upload failed: \(done)") }
        }
        var put = URLRequest(url: URL(string: base + "/manifests/" + tag)!)
        put.httpMethod = "PUT"
        put.setValue(mediaType, forHTTPHeaderField: "Content-Type")
        let (_, done) = try await session.upload(for: put, from: Data(manifest))
        guard (done as? HTTPURLResponse)?.statusCode == 201 else { throw StorageTestError("manifest upload failed: \(done)") }
    }

    /// The manifest (or index) the registry serves for `name`, as JSON.
    func rawManifest(_ name: String) throws -> [String: Any] {
        let output = try Subprocess.checked(["skopeo", "inspect", "--raw", "--tls-verify=false", "docker://\(address)/\(name)"])
        return try JSONSerialization.jsonObject(with: Data(output.stdout)) as? [String: Any] ?? [:]
    }

    func stop() {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
    }

    deinit { stop() }
}

struct StorageTestError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A misbehaving registry: answers every request with one status, or accepts and never answers.
final class BrokenRegistry: @unchecked Sendable {
    enum Behaviour: Sendable {
        case status(Int, challenge: String?)
        case hang
        /// A bearer-token front for a real registry: /token hands out a token; requests carrying it
        /// are redirected to `upstream`, others get a 401 Bearer challenge.
        case tokenGate(upstream: String)
        /// Answers each request by its target (path and query) with the reply the closure picks;
        /// the closure also gets the server's own address.
        case scripted(@Sendable (_ target: String, _ address: String) -> Reply)
    }

    enum Reply: Sendable {
        case body(status: Int, headers: [String: String], body: [UInt8])
        /// 200 and a body that never ends (until the client hangs up); `headers` may lie about its length.
        case endless(headers: [String: String])
    }

    /// Requests /token answered by a token gate.
    var tokenRequests: Int { held.lock.withLock { held.tokenRequests } }

    let address: String
    private let listener: Int32
    private let thread: Thread
    /// Connections a hanging server holds open until stopped.
    private final class Held: @unchecked Sendable {
        let lock = NSLock()
        var descriptors: [Int32] = []
        var stopped = false
        var tokenRequests = 0
    }
    private let held = Held()

    init(_ behaviour: Behaviour) throws {
        listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let listener = self.listener
        guard
            withUnsafeMutablePointer(to: &address, { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, length) } })
                == 0,
            listen(listener, 16) == 0
        else { throw StorageTestError("cannot listen") }
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &length) }
        }
        let port = UInt16(bigEndian: address.sin_port)
        self.address = "127.0.0.1:\(port)"
        let held = self.held
        thread = Thread {
            while !held.lock.withLock({ held.stopped }) {
                // Poll, so the thread notices stop() and the test process can exit.
                var ready = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
                if poll(&ready, 1, 100) <= 0 { continue }
                let connection = accept(listener, nil, nil)
                if connection < 0 { continue }
                let request = BrokenRegistry.readRequestHead(connection, while: { !held.lock.withLock { held.stopped } })
                let myAddress = "127.0.0.1:\(port)"
                switch behaviour {
                case .tokenGate(let upstream):
                    let target = request.split(separator: " ").dropFirst().first.map(String.init) ?? "/"
                    var response: String
                    if target.hasPrefix("/token?") && target.contains("scope=repository") {
                        held.lock.withLock { held.tokenRequests += 1 }
                        let body = #"{"token":"secret-token"}"#
                        response = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n" + body
                    } else if request.contains("Authorization: Bearer secret-token") {
                        response = "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://\(upstream)\(target)\r\nContent-Length: 0\r\n\r\n"
                    } else {
                        response =
                            "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nWWW-Authenticate: Bearer realm=\"http://\(myAddress)/token\",service=\"test\"\r\n\r\n"
                    }
                    _ = response.withCString { Glibc.send(connection, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
                    close(connection)
                case .scripted(let reply):
                    let target = request.split(separator: " ").dropFirst().first.map(String.init) ?? "/"
                    BrokenRegistry.send(reply(target, myAddress), on: connection, while: { !held.lock.withLock { held.stopped } })
                    close(connection)
                case .hang:
                    held.lock.withLock { held.descriptors.append(connection) }
                case .status(let code, let challenge):
                    var response = "HTTP/1.1 \(code) Status\r\nContent-Length: 0\r\nConnection: close\r\n"
                    if let challenge { response += "WWW-Authenticate: \(challenge)\r\n" }
                    response += "\r\n"
                    _ = response.withCString { Glibc.send(connection, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
                    close(connection)
                }
            }
        }
        thread.start()
    }

    /// The request line and headers. A loaded machine may send them well after the connect (CI
    /// once took over a second and got the reply meant for another path), so this reads until the
    /// blank line, for up to 30 s; a client that connects and sends nothing does not pin the thread
    /// longer than that.
    private static func readRequestHead(_ connection: Int32, while running: () -> Bool) -> String {
        var limit = timeval(tv_sec: 0, tv_usec: 200_000)
        setsockopt(connection, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        let end = Array("\r\n\r\n".utf8)
        for _ in 0..<150 where running() && received.count < 65536 {
            let count = read(connection, &buffer, buffer.count)
            if count == 0 { break }
            if count < 0 {
                if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { continue }
                break
            }
            received += buffer[0..<count]
            let ends = received.indices.dropLast(end.count - 1).contains { received[$0..<($0 + end.count)].elementsEqual(end) }
            if ends { break }
        }
        return String(decoding: received, as: UTF8.self)
    }

    /// Writes a reply; MSG_NOSIGNAL so a client that hangs up ends the write, not the test process.
    private static func send(_ reply: Reply, on connection: Int32, while running: () -> Bool) {
        func write(_ bytes: [UInt8]) -> Bool {
            var offset = 0
            while offset < bytes.count {
                let n = bytes[offset...].withUnsafeBytes { Glibc.send(connection, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                if n <= 0 { return false }
                offset += n
            }
            return true
        }
        switch reply {
        case .body(let status, let headers, let body):
            var head = "HTTP/1.1 \(status) Status\r\nContent-Length: \(body.count)\r\nConnection: close\r\n"
            for (key, value) in headers { head += "\(key): \(value)\r\n" }
            _ = write(Array((head + "\r\n").utf8) + body)
        case .endless(let headers):
            var head = "HTTP/1.1 200 OK\r\nConnection: close\r\n"
            for (key, value) in headers { head += "\(key): \(value)\r\n" }
            guard write(Array((head + "\r\n").utf8)) else { return }
            let chunk = [UInt8](repeating: 0x20, count: 65536)
            // At most 1 GiB, so a client that never stops reading cannot pin the test forever.
            for _ in 0..<(1 << 14) where running() {
                if !write(chunk) { return }
            }
        }
    }

    func stop() {
        let first = held.lock.withLock {
            defer { held.stopped = true }
            return !held.stopped
        }
        guard first else { return }
        for _ in 0..<300 where !thread.isFinished { usleep(10_000) }
        close(listener)
        held.lock.withLock { for descriptor in held.descriptors { close(descriptor) } }
    }

    deinit { stop() }
}
