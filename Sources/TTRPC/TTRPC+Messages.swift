import SwiftProtobuf

extension TTRPCServer {
    /// Registers a handler that takes and returns protobuf messages. A payload that does not
    /// decode is answered INTERNAL "ttrpc: error unmarshalling payload", as the Go server does.
    public func register<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        service: String, method: String,
        _ handler: @escaping @Sendable (_ request: Request, _ context: TTRPCCallContext) async throws -> Response
    ) {
        register(service: service, method: method) { context, payload in
            let request: Request
            do {
                request = try Request(serializedBytes: payload)
            } catch {
                throw TTRPCStatus(.internal, "ttrpc: error unmarshalling payload: \(error)")
            }
            return try await handler(request, context).serializedBytes()
        }
    }
}

extension TTRPCClient {
    /// Calls `/service/method` with a protobuf request and decodes the protobuf response.
    public func call<Response: SwiftProtobuf.Message>(
        service: String, method: String, request: some SwiftProtobuf.Message,
        as responseType: Response.Type = Response.self,
        metadata: [(key: String, value: String)] = [], timeout: Duration? = nil
    ) async throws -> Response {
        let payload = try await call(
            service: service, method: method, payload: try request.serializedBytes(),
            metadata: metadata, timeout: timeout)
        do {
            return try Response(serializedBytes: payload)
        } catch {
            throw TTRPCStatus(.internal, "ttrpc: error unmarshalling response of /\(service)/\(method): \(error)")
        }
    }
}
