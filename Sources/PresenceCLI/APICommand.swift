import ArgumentParser

/// `presence api` and `presence help api`: the server's routes, payloads and WebSocket frames in brief
/// (`serve --help` ends with the same text; docs/ARCHITECTURE.md has the whole of it).
struct APICommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "api",
        abstract: "The HTTP and WebSocket API of `presence serve`, in brief.",
        discussion: apiSummary
    )

    func run() throws {
        print(apiSummary)
    }
}

/// The API summary. Lines stay under 79 columns, so help output does not re-wrap them.
let apiSummary = """
    HTTP; every error is {"error":{"code":"...","message":"..."}} with a status.
      GET  /health                  no token: {"status","log_end_offset",
                                    "durable_end_offset"}
      GET  /metrics                 any token: Prometheus text
      POST /v1/events               gateway token: NDJSON, one event a line,
                                    each naming the token's gateway; all lines
                                    valid or nothing written (400 lists them;
                                    403 for another gateway's); 200
                                    {"first_offset","last_offset"} on disk
      POST /v1/conversations        user token: {"members":["alice","bob"]}
                                    (2 to 256, the caller among them) -> 201
                                    {"id"}; 200 and the same id when two
                                    members already have their conversation
      POST /v1/conversations/{id}/messages
                                    member: {"content":"...","client_id":"..."}
                                    -> 201 {"seq","ts"} (200 for a client_id
                                    already used: its first seq)
      GET  /v1/conversations/{id}?after_seq=N|before_seq=N&limit=M
                                    member: the newest messages (or those after
                                    or before a seq), in seq order, at most M
                                    (50; 200 at most): {"conversation_id","messages":
                                    [{"seq","sender","content","ts"}],
                                    "has_more","presence":{member:{"online",
                                    "last_seen","connections"}},
                                    "presence_cursor"}
      GET  /v1/me/conversations     user token: the inbox, most recent first:
                                    {"conversations":[{"id","members",
                                    "last_message","presence":{..}}],
                                    "presence_cursor"}
      GET  /v1/users/{id}/presence  a user sharing a conversation with {id}
                                    (or {id} itself): {"user","online",
                                    "last_seen","connections","presence_cursor"}
      GET  /v1/users/{id}/history?from=T&to=T
                                    operator (or {id} itself): {"user","sessions":
                                    [{"conn","gateway","start","end",
                                    "end_reason","duration_ms"}]}, as
                                    `presence history --format json`
      GET  /v1/users/{id}/state?at=T
                                    operator (or {id} itself): {"user","at",
                                    "online","last_seen","connections",
                                    "through_offset"}, as `presence state --at`
      GET  /v1/log                  operator: {"segments":[..],"total":{..},
                                    "log_end_offset","durable_end_offset"}, as
                                    `presence log-info --json`
      GET  /                        the web console (chat and audit views)
    Ids in paths are percent-decoded (%F0%9F%99%82 is a user called 🙂); times
    are ISO-8601 with a zone or epoch milliseconds.

    WebSocket /v1/ws, user token in Authorization or ?token=. The socket is the
    user's connection: opening it logs a connect, closing it a disconnect.
      first frame  {"type":"ready","user","conn","offset"}
      send         {"op":"open","conversation":"<id>"}
      get          {"type":"opened","conversation","presence":{..},
                   "presence_cursor","last_seq"}, then pushes while it is
                   open: {"type":"presence","user","online","last_seen",
                   "offset"} and {"type":"message","conversation","seq",
                   "sender","content","ts"}
      send         {"op":"close","conversation":"<id>"}
      get          {"type":"closed","conversation"}
      send         {"op":"send","conversation":"<id>","content":"...",
                   "client_id":"..."} (client_id optional)
      get          {"type":"sent","conversation","client_id","seq","ts"};
                   a client_id already used is answered with its first seq,
                   and nothing is posted again (over HTTP too: 200)

    Tokens: `presence token --user U` (a user), `--user NAME --gateway` (a
    gateway, for POST /v1/events only) or `--user NAME --operator` (the audit
    routes and /metrics). docs/ARCHITECTURE.md, "HTTP and WebSocket API", has
    the details.
    """
