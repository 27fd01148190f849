// Package logplaneapi holds the wire types and paths of logplane's own endpoints, served by the
// API server beside the Kubernetes API under /apis/logplane.io/v1alpha1: object history, the
// audit query, the log's status and image loading into nodes. Clients (lpctl) import it without
// the server.
//
// Reads "as of" the past use the Kubernetes URLs themselves with the At header.
package logplaneapi

import (
	"encoding/json"
	"time"
)

// Prefix is where the endpoints are served.
const Prefix = "/apis/logplane.io/v1alpha1"

// AtHeader, set on a get or list of the Kubernetes API, reads the state as it was at a
// resourceVersion ("1234") or an RFC 3339 time ("2026-11-23T10:00:00Z"). The response's
// resourceVersion is the one the state was read at, and a Table's ages are measured from then. A
// resourceVersion the log has not reached is a 504 "Too large resource version" (cause
// ResourceVersionTooLarge), a time in the future a 400.
const AtHeader = "X-Logplane-At"

// HistoryPath is the history of the object that the Kubernetes path names, for example
// HistoryPath("/api/v1/namespaces/default/pods/nginx"). Deleted objects keep their history.
func HistoryPath(objectPath string) string {
	if len(objectPath) > 0 && objectPath[0] != '/' {
		objectPath = "/" + objectPath
	}
	return Prefix + "/history" + objectPath
}

// AuditPath is the audit query. Parameters: since (a duration like 1h, or an RFC 3339 time),
// actor (a name), actorKind (user, reconciler, node, system), resource (plural, optionally
// resource.group), namespace, name, limit (the newest N of the matching events, still oldest first).
const AuditPath = Prefix + "/audit"

// StatusPath reports the log and the projection: first and last sequence, applied sequence.
const StatusPath = Prefix + "/status"

// NodeImagesPath is where an image archive is loaded into a node: POST an OCI (or Docker) image
// archive, as `docker save` or `lpctl image build` write it, with Content-Type ImageArchiveType.
// The API server streams it to the node agent, which imports it into its container runtime; the
// answer is an ImageLoad. A node whose runtime keeps no images (the simulated one) answers 400.
func NodeImagesPath(node string) string {
	return Prefix + "/nodes/" + node + "/images"
}

// ImageArchiveType is the media type of an image archive posted to NodeImagesPath.
const ImageArchiveType = "application/x-tar"

// ImageLoad is the answer of a load into a node: the names of the images the archive held, now
// present on the node.
type ImageLoad struct {
	Kind       string   `json:"kind"` // "ImageLoad"
	APIVersion string   `json:"apiVersion"`
	Node       string   `json:"node"`
	Images     []string `json:"images"`
}

// Actor is who made a change.
type Actor struct {
	Kind string `json:"kind"` // user, reconciler, node, system
	Name string `json:"name"`
}

// Revision is one event of an object's history.
type Revision struct {
	// ResourceVersion of the revision (the event's sequence in the log).
	ResourceVersion string `json:"resourceVersion"`
	// Type is ADDED, MODIFIED or DELETED.
	Type   string    `json:"type"`
	Reason string    `json:"reason"`
	Actor  Actor     `json:"actor"`
	Cause  string    `json:"cause,omitempty"` // the resourceVersion of the event this one reacted to
	Time   time.Time `json:"time"`
	// Object is the whole object after the change (for a deletion, its last state).
	Object json.RawMessage `json:"object,omitempty"`
	// Changes is the JSON merge patch from the previous revision to this one (absent for the
	// first revision and for deletions).
	Changes json.RawMessage `json:"changes,omitempty"`
	// Secret, for an object whose values are secret (a Secret), replaces them: Object and
	// Changes leave out its data (and the last-applied annotation that would repeat it), and
	// this says which keys changed and their sizes. Never a value.
	Secret *SecretValues `json:"secret,omitempty"`
}

// SecretValues is what history says of a Secret's values.
type SecretValues struct {
	// Forgotten: the object was deleted and its data key destroyed, so this revision's values
	// can no longer be read by anyone (Object then holds only what the log keeps in clear).
	Forgotten bool `json:"forgotten,omitempty"`
	// Keys are the keys of the secret fields (data) with their sizes and what happened to them
	// since the previous revision, sorted by field and key.
	Keys []SecretKey `json:"keys,omitempty"`
}

// SecretKey is one key of a secret field in one revision.
type SecretKey struct {
	Field string `json:"field"` // data
	Key   string `json:"key"`
	// Bytes is the size of the value (decoded), 0 for a removed key.
	Bytes int `json:"bytes"`
	// Change is added, changed, removed or unchanged.
	Change string `json:"change"`
}

// History is the answer of the history endpoint.
type History struct {
	Kind       string     `json:"kind"` // "History"
	APIVersion string     `json:"apiVersion"`
	Group      string     `json:"group"`
	Resource   string     `json:"resource"`
	Namespace  string     `json:"namespace,omitempty"`
	Name       string     `json:"name"`
	Items      []Revision `json:"items"`
	// CausedBy is the chain of changes that led to the first revision, nearest first: the change
	// that revision reacted to (its cause), the one that change reacted to, and so on, up to a
	// change with no cause (a user's, say). For a pod of a Deployment: the ReplicaSet scaled up by
	// the deployment reconciler, then the user's change to the Deployment.
	CausedBy []AuditEntry `json:"causedBy,omitempty"`
}

// AuditEntry is one change in the audit answer.
type AuditEntry struct {
	ResourceVersion string    `json:"resourceVersion"`
	Time            time.Time `json:"time"`
	Type            string    `json:"type"`
	Reason          string    `json:"reason"`
	Actor           Actor     `json:"actor"`
	Cause           string    `json:"cause,omitempty"`
	Group           string    `json:"group,omitempty"`
	Version         string    `json:"version"`
	Kind            string    `json:"kind"`
	Resource        string    `json:"resource"`
	Namespace       string    `json:"namespace,omitempty"`
	Name            string    `json:"name"`
	UID             string    `json:"uid,omitempty"`
	// Annotations are the write's audit annotations (admission's: Pod Security's audit
	// violations, ...), as in Kubernetes' audit events.
	Annotations map[string]string `json:"annotations,omitempty"`
	// Denied marks a request that authorization refused (Type "DENIED"): it changed nothing,
	// and ResourceVersion is empty. Verb, Subresource and Message say what was asked and the
	// 403's message; Actor is the user.
	Denied      bool   `json:"denied,omitempty"`
	Verb        string `json:"verb,omitempty"`
	Subresource string `json:"subresource,omitempty"`
	Message     string `json:"message,omitempty"`
}

// Audit is the answer of the audit endpoint, oldest first.
type Audit struct {
	Kind       string       `json:"kind"` // "Audit"
	APIVersion string       `json:"apiVersion"`
	Items      []AuditEntry `json:"items"`
}

// Status is the answer of the status endpoint.
type Status struct {
	Kind       string `json:"kind"` // "Status"
	APIVersion string `json:"apiVersion"`
	// FirstSeq and LastSeq bound the log; Applied is the projection's position, Watchers the
	// watches being served.
	FirstSeq uint64 `json:"firstSeq"`
	LastSeq  uint64 `json:"lastSeq"`
	Applied  uint64 `json:"applied"`
	Watchers int    `json:"watchers"`
}
