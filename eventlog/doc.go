// Package eventlog is logplane's object log: the only package that talks to NATS JetStream.
//
// Every change to every object is one ObjectChanged event appended to a single stream, on a
// subject of its own per object (see Log.Subject), so that JetStream's per-subject
// compare-and-set gives Kubernetes update semantics with no other store. The stream sequence of
// an event is the resourceVersion of the revision it carries. Deletion appends a tombstone; the
// history of every object stays in the log for as long as retention allows (by default, forever).
//
// Writes: Append (compare-and-set against a revision), Create. Reads: Get, History, At (a key
// at a revision), Replay (a range, then stop), Follow (a watch: a range, then every new event),
// Bounds. A stored message that is not a readable event reaches readers as a Record with Err
// set, with its sequence, so that they report it and go on. Projection snapshots are kept
// beside the stream (PutSnapshot, Snapshots, OpenSnapshot); leases for reconcilers too (Leases).
//
// The log runs on an embedded nats-server with file storage in a data directory, or on an
// external NATS server or cluster given by URL; the same code path serves both. Acknowledged
// appends are durable: see Durability for how, and what each choice trades, and
// docs/logspine.md for the design.
//
// eventlog imports the generated protobuf envelope and nothing else of logplane's; everything
// above it (projections, apiserver, reconcilers, node agents) uses this package, never NATS.
package eventlog
