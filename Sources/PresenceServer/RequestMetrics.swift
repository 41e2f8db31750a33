import Dispatch
import Hummingbird
import Metrics
import Synchronization

/// Request metrics by route, method and status, as Hummingbird's `MetricsMiddleware` names them
/// (`hb_requests`, `http_server_request_duration`, `hb_request_errors`, `http_server_active_requests`),
/// with two differences (and the duration ends when the handler returns its in-memory answer): a request whose handler throws (a 401 from `authenticate`, a 404) is timed
/// like one that returns, so the latency histogram counts every request `hb_requests` counts; and
/// the error counter exists only for statuses of 400 and up, so no `error_type="200"` series appears.
struct RequestMetricsMiddleware<Context: RequestContext>: RouterMiddleware {
    private let cache = MetricsCache()

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let started = DispatchTime.now().uptimeNanoseconds
        let active = cache.active(request.method)
        active.increment()
        do {
            // Recorded when the handler returns: every body here is already in memory.
            let response = try await next(request, context)
            cache.record(route: context.endpointPath ?? "Unknown", method: request.method, status: response.status, since: started)
            active.decrement()
            return response
        } catch {
            let status = (error as? any HTTPResponseError)?.status ?? .internalServerError
            cache.record(route: context.endpointPath ?? "NotFound", method: request.method, status: status, since: started)
            active.decrement()
            throw error
        }
    }

    /// The metric handles, made once per route, method and status (swift-metrics looks labels up in a
    /// locked table on every make).
    final class MetricsCache: Sendable {
        struct Key: Hashable {
            let route: String
            let method: HTTPRequest.Method
            let status: HTTPResponse.Status
        }
        struct Handles: Sendable {
            let requests: Counter
            let duration: Timer
            let errors: Counter?
        }

        private let handles = Mutex<[Key: Handles]>([:])
        private let meters = Mutex<[HTTPRequest.Method: Meter]>([:])

        func active(_ method: HTTPRequest.Method) -> Meter {
            meters.withLock { table in
                if let meter = table[method] { return meter }
                let meter = Meter(label: "http.server.active_requests", dimensions: [("http.request.method", method.description)])
                table[method] = meter
                return meter
            }
        }

        func record(route: String, method: HTTPRequest.Method, status: HTTPResponse.Status, since started: UInt64) {
            let key = Key(route: route, method: method, status: status)
            let found = handles.withLock { table in
                if let found = table[key] { return found }
                let dimensions = [("http.route", route), ("http.request.method", method.description), ("http.response.status_code", status.code.description)]
                let made = Handles(
                    requests: Counter(label: "hb.requests", dimensions: dimensions),
                    duration: Timer(label: "http.server.request.duration", dimensions: dimensions, preferredDisplayUnit: .seconds),
                    errors: status.code >= 400
                        ? Counter(label: "hb.request.errors", dimensions: [("http.route", route), ("http.request.method", method.description),
                                                                           ("error.type", status.code.description)])
                        : nil
                )
                table[key] = made
                return made
            }
            found.requests.increment()
            found.duration.recordNanoseconds(DispatchTime.now().uptimeNanoseconds - started)
            found.errors?.increment()
        }
    }
}
