package eventlog

import "errors"

// Errors returned by the Log. Callers test for them with errors.Is; they are wrapped with context.
var (
	// ErrConflict: the key's latest revision is not the one the append expected.
	ErrConflict = errors.New("eventlog: conflict: the object was changed since it was read")
	// ErrExists: a create found a live revision of the key.
	ErrExists = errors.New("eventlog: the object already exists")
	// ErrNotFound: the key has no revision, or its latest revision is a tombstone.
	ErrNotFound = errors.New("eventlog: not found")
	// ErrGone: the requested sequence is older than the first one retention has kept.
	ErrGone = errors.New("eventlog: the requested revision is no longer in the log")
	// ErrTooLarge: the event does not fit in one message of the server's max payload.
	ErrTooLarge = errors.New("eventlog: event too large")
	// ErrInvalid: the event or key is not well formed (missing resource or name, bad type).
	ErrInvalid = errors.New("eventlog: invalid event")
	// ErrClosed: the Log was closed.
	ErrClosed = errors.New("eventlog: closed")
	// ErrUnreachable: Open could not connect to the server at the configured URL (not up yet,
	// or restarting); trying again later may succeed.
	ErrUnreachable = errors.New("eventlog: server unreachable")
	// ErrUnavailable: the connection to the server was lost while a write waited for its answer
	// and did not come back in time (or what became of the write could not be found out). The
	// write may or may not have been made: a retried append that expects a revision conflicts
	// rather than writes twice. Trying again later may succeed.
	ErrUnavailable = errors.New("eventlog: server unavailable")
	// ErrUnauthorized: the server refused the credentials (none, unknown, expired or revoked),
	// or refused an operation they do not allow.
	ErrUnauthorized = errors.New("eventlog: not authorized")
	// ErrLocked: another process runs a server on the data directory.
	ErrLocked = errors.New("eventlog: data directory locked")
)
