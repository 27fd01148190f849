package eventlog

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/logplane/logplane/durablefile"
)

// ErrNoAuthority is returned when a credential is asked of a log that does not hold the keys that
// sign them (a log on an external server, whose operator issues its credentials).
var ErrNoAuthority = errors.New("eventlog: this log holds no signing keys for credentials")

// Role names what a credential of the log is for; each role may do only what it needs.
type Role string

const (
	// RoleAdmin may do anything: the operator's own credential, and the process embedding the
	// server.
	RoleAdmin Role = "admin"
	// RoleAPIServer reads the whole log, appends to any object, keeps snapshots and the join
	// tokens; it may not delete or purge anything, nor change the stream's retention.
	RoleAPIServer Role = "apiserver"
	// RoleReconciler reads the whole log, appends to any object and uses its reconciler sets'
	// lease buckets.
	RoleReconciler Role = "reconcile"
	// RoleScheduler reads the whole log, appends to pods (bindings) and Events only, and uses
	// its lease bucket.
	RoleScheduler Role = "scheduler"
	// RoleNode is one node: it appends nothing itself; it sends its writes as commands on its
	// own subject, and the control plane appends those that touch only its own Node, its Lease,
	// Events and the status of its pods (ServeNodeCommands).
	RoleNode Role = "node"
	// RoleSimulatedNodes is a process of simulated nodes (a scale-test tool run beside the
	// control plane): what a node may, for any node; its writes too are checked commands.
	RoleSimulatedNodes Role = "simnodes"
)

// Identity is who holds a credential of the log.
type Identity struct {
	Role Role
	// Name is the node's name for RoleNode; for the other roles, a name for the holder
	// (default the role's).
	Name string
	// LeaseBuckets are the lease buckets (Log.Leases names) a reconciler or scheduler may use.
	LeaseBuckets []string
}

func (id Identity) userName() string {
	if id.Role == RoleNode {
		return "system:node:" + id.Name
	}
	if id.Name != "" {
		return "logplane:" + string(id.Role) + ":" + id.Name
	}
	return "logplane:" + string(id.Role)
}

// inboxPrefix is where the holder's replies arrive: its own, so that no credential can read the
// answers meant for another (a node reading the API server's replies would read every Secret).
func (id Identity) inboxPrefix() string {
	name := id.Name
	if name == "" {
		name = string(id.Role)
	}
	return "_INBOX_" + strings.ToUpper(string(id.Role)) + "." + escapeToken(name)
}

// authority holds the keys of the embedded server's trust chain: the operator, the system
// account, and the logplane account whose key signs every user credential. They are made at the
// first start, in files only their owner can read.
type authority struct {
	operator, system, account nkeys.KeyPair
	opClaims                  *jwt.OperatorClaims
	sysJWT, accJWT            string
	sysPub, accPub            string
}

// loadAuthority reads the keys in dir, making those that are missing.
func loadAuthority(dir string) (*authority, error) {
	if err := durablefile.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("eventlog: auth keys: %w", err)
	}
	key := func(name string, create func() (nkeys.KeyPair, error)) (nkeys.KeyPair, error) {
		path := filepath.Join(dir, name+".nk")
		seed, err := os.ReadFile(path)
		if err == nil {
			kp, err := nkeys.FromSeed(bytes.TrimSpace(seed))
			if err != nil {
				return nil, fmt.Errorf("eventlog: auth key %s: %w", path, err)
			}
			return kp, nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("eventlog: auth key: %w", err)
		}
		kp, err := create()
		if err != nil {
			return nil, fmt.Errorf("eventlog: auth key %s: %w", name, err)
		}
		seed, err = kp.Seed()
		if err != nil {
			return nil, fmt.Errorf("eventlog: auth key %s: %w", name, err)
		}
		if err := durablefile.Write(path, append(seed, '\n'), 0o600); err != nil {
			return nil, fmt.Errorf("eventlog: auth key: %w", err)
		}
		return kp, nil
	}
	a := &authority{}
	var err error
	if a.operator, err = key("operator", nkeys.CreateOperator); err != nil {
		return nil, err
	}
	if a.system, err = key("system", nkeys.CreateAccount); err != nil {
		return nil, err
	}
	if a.account, err = key("account", nkeys.CreateAccount); err != nil {
		return nil, err
	}
	opPub, _ := a.operator.PublicKey() // a key read from a seed always has one
	a.sysPub, _ = a.system.PublicKey()
	a.accPub, _ = a.account.PublicKey()
	a.opClaims = jwt.NewOperatorClaims(opPub)
	a.opClaims.Name = "logplane"
	a.opClaims.SystemAccount = a.sysPub
	// The claims are signed again at every start, from the keys: nothing else needs keeping.
	if _, err := a.opClaims.Encode(a.operator); err != nil {
		return nil, fmt.Errorf("eventlog: operator claims: %w", err)
	}
	sys := jwt.NewAccountClaims(a.sysPub)
	sys.Name = "SYS"
	if a.sysJWT, err = sys.Encode(a.operator); err != nil {
		return nil, fmt.Errorf("eventlog: system account claims: %w", err)
	}
	acc := jwt.NewAccountClaims(a.accPub)
	acc.Name = "logplane"
	acc.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1,
		MaxAckPending: -1, MemoryMaxStreamBytes: -1, DiskMaxStreamBytes: -1}
	if a.accJWT, err = acc.Encode(a.operator); err != nil {
		return nil, fmt.Errorf("eventlog: account claims: %w", err)
	}
	return a, nil
}

// configure makes opts trust only this authority's users.
func (a *authority) configure(opts *server.Options) error {
	r := &server.MemAccResolver{}
	if err := r.Store(a.sysPub, a.sysJWT); err != nil {
		return fmt.Errorf("eventlog: system account: %w", err)
	}
	if err := r.Store(a.accPub, a.accJWT); err != nil {
		return fmt.Errorf("eventlog: account: %w", err)
	}
	opts.TrustedOperators = []*jwt.OperatorClaims{a.opClaims}
	opts.SystemAccount = a.sysPub
	opts.AccountResolver = r
	return nil
}

// userJWT signs a credential for the user key userPub with id's permissions.
func (a *authority) userJWT(cfg *Config, id Identity, userPub string) (string, error) {
	if !nkeys.IsValidPublicUserKey(userPub) {
		return "", fmt.Errorf("%w: %q is not a NATS user public key", ErrInvalid, userPub)
	}
	if id.Role == RoleNode && (id.Name == "" || strings.ContainsAny(id.Name, " \t*>")) {
		return "", fmt.Errorf("%w: node name %q", ErrInvalid, id.Name)
	}
	uc := jwt.NewUserClaims(userPub)
	uc.Name = id.userName()
	uc.IssuedAt = time.Now().Unix()
	pub, deny, sub, err := permissions(cfg, id)
	if err != nil {
		return "", err
	}
	uc.Pub.Allow.Add(pub...)
	uc.Pub.Deny.Add(deny...)
	uc.Sub.Allow.Add(sub...)
	if id.Role == RoleAPIServer || id.Role == RoleReconciler {
		uc.Resp = &jwt.ResponsePermission{MaxMsgs: 1, Expires: time.Minute}
	}
	s, err := uc.Encode(a.account)
	if err != nil {
		return "", fmt.Errorf("eventlog: user claims: %w", err)
	}
	return s, nil
}

// credentials makes a new user key and its signed credential, as a NATS .creds file.
func (a *authority) credentials(cfg *Config, id Identity) ([]byte, error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return nil, fmt.Errorf("eventlog: user key: %w", err)
	}
	pub, _ := kp.PublicKey() // a new key has one
	token, err := a.userJWT(cfg, id, pub)
	if err != nil {
		return nil, err
	}
	seed, err := kp.Seed()
	if err != nil {
		return nil, fmt.Errorf("eventlog: user key: %w", err)
	}
	return jwt.FormatUserConfig(token, seed)
}

// permissions are what id may publish (allow, deny) and subscribe to.
func permissions(cfg *Config, id Identity) (pub, deny, sub []string, err error) {
	if id.Role == RoleAdmin {
		return []string{">"}, nil, []string{">"}, nil
	}
	p, s := cfg.Prefix, cfg.Stream
	snaps := "OBJ_" + s + "_SNAPSHOTS"
	// Reading a stream: its info, ordered consumers, direct and last-message gets.
	read := func(stream string) []string {
		return []string{
			"$JS.API.STREAM.INFO." + stream,
			"$JS.API.CONSUMER.CREATE." + stream, "$JS.API.CONSUMER.CREATE." + stream + ".>",
			"$JS.API.CONSUMER.INFO." + stream + ".>", "$JS.API.CONSUMER.DELETE." + stream + ".>",
			"$JS.API.CONSUMER.MSG.NEXT." + stream + ".>",
			"$JS.API.DIRECT.GET." + stream, "$JS.API.DIRECT.GET." + stream + ".>",
			"$JS.API.STREAM.MSG.GET." + stream,
		}
	}
	keys := cfg.keysStream()
	if id.Role == RoleNode {
		// A node reads its own feed and nothing else of the log (feed.go): not the stream, the
		// snapshots or the data keys. The control plane opens the Secrets of its feed for it.
		pub = append([]string{"$JS.API.INFO"}, read(cfg.feedStream(id.Name))...)
	} else {
		pub = append([]string{"$JS.API.INFO", p + ".sys.commit"}, read(s)...)
		pub = append(pub, read(snaps)...)
		pub = append(pub, read(keys)...) // every role opens the Secrets it reads
	}
	sub = []string{id.inboxPrefix() + ".>"}
	// Nothing but the admin deletes, purges, lists or reconfigures streams.
	deny = []string{"$JS.API.STREAM.PURGE.>", "$JS.API.STREAM.DELETE.>", "$JS.API.STREAM.MSG.DELETE." + s, "$JS.API.STREAM.MSG.DELETE." + snaps,
		"$JS.API.STREAM.UPDATE." + s, "$JS.API.STREAM.LIST", "$JS.API.STREAM.NAMES", "$JS.API.CONSUMER.DURABLE.CREATE.>",
		"$JS.API.ACCOUNT.>", "$JS.API.SERVER.>", "$JS.API.META.>"}
	leases := func(buckets []string) {
		for _, b := range buckets {
			st := "KV_" + s + "_LEASES_" + strings.ToUpper(b)
			pub = append(pub, read(st)...)
			pub = append(pub, "$JS.API.STREAM.CREATE."+st, "$JS.API.STREAM.UPDATE."+st, "$KV."+s+"_LEASES_"+strings.ToUpper(b)+".>")
		}
	}
	obj := func(group, resource, ns, name string) string {
		return p + ".obj." + group + "." + resource + "." + ns + "." + name
	}
	switch id.Role {
	case RoleAPIServer:
		// It may create the stream (on an external server it is the first to start), keeps
		// the snapshots and the join tokens, and answers the nodes' commands.
		sub = append(sub, p+".node.*.append", p+".node.*.open", p+".node.*.query")
		pub = append(pub, p+".obj.>", "$JS.API.STREAM.CREATE."+s, "$JS.API.STREAM.CREATE."+snaps, "$O."+s+"_SNAPSHOTS.>")
		pub = append(pub, read("KV_"+joinBucket(s))...)
		pub = append(pub, "$JS.API.STREAM.CREATE.KV_"+joinBucket(s), "$KV."+joinBucket(s)+".>")
		// It makes the Secrets' data keys, has them fsynced, and destroys them (crypto-shredding).
		pub = append(pub, "$JS.API.STREAM.CREATE."+keys, p+".dek.>", cfg.keysCommitSubject(), "$JS.API.STREAM.MSG.DELETE."+keys)
		// It records the requests it refused, and reads those of the others.
		pub = append(pub, read(cfg.deniedStream())...)
		pub = append(pub, "$JS.API.STREAM.CREATE."+cfg.deniedStream(), cfg.deniedSubject())
	case RoleReconciler:
		pub = append(pub, p+".obj.>")
		// The nodes' feeds (reconcilers/nodefeed): a stream per node, made on first use. A
		// wildcard names whole tokens only, so this is every stream's creation and reading;
		// changing or deleting one stays denied.
		pub = append(pub, read("*")...)
		pub = append(pub, "$JS.API.STREAM.CREATE.*", p+".feed.>")
		sub = append(sub, p+".node.*.feed") // nodes asking for their feed
		leases(id.LeaseBuckets)
	case RoleScheduler:
		pub = append(pub, obj("core", "pods", "*", "*"), obj("core", "events", "*", "*"), obj(escapeToken("events.k8s.io"), "events", "*", "*"))
		leases(id.LeaseBuckets)
	case RoleNode:
		// Never the stream: its own command subject, which the control plane checks.
		pub = append(pub, cfg.nodeCommandSubject(id.Name), cfg.nodeOpenSubject(id.Name), cfg.feedRequestSubject(id.Name), cfg.nodeQuerySubject(id.Name))
	case RoleSimulatedNodes:
		pub = append(pub, p+".node.*.append")
	default:
		return nil, nil, nil, fmt.Errorf("%w: unknown role %q", ErrInvalid, id.Role)
	}
	return pub, deny, sub, nil
}

// joinBucket is the key-value bucket of bootstrap tokens.
func joinBucket(stream string) string { return stream + "_JOIN_TOKENS" }

// Credentials returns a new NATS credentials file (a user key and its signed JWT) for id. Only
// a log that embeds its server holds the keys that sign them.
func (l *Log) Credentials(id Identity) ([]byte, error) {
	if l.auth == nil {
		return nil, ErrNoAuthority
	}
	return l.auth.credentials(&l.cfg, id)
}

// SignUser returns a credential (a user JWT) for the NATS user key userPub with id's rights: for
// a holder that made its key itself and sends only the public half, as a joining node does.
func (l *Log) SignUser(id Identity, userPub string) (string, error) {
	if l.auth == nil {
		return "", ErrNoAuthority
	}
	return l.auth.userJWT(&l.cfg, id, userPub)
}

// CredentialsFile formats a user JWT and the seed of its key as a NATS credentials file.
func CredentialsFile(userJWT string, seed []byte) ([]byte, error) {
	return jwt.FormatUserConfig(userJWT, seed)
}

// NewUserKey makes a NATS user key: its seed (secret) and public key.
func NewUserKey() (seed []byte, pub string, err error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return nil, "", fmt.Errorf("eventlog: user key: %w", err)
	}
	pub, _ = kp.PublicKey()
	seed, err = kp.Seed()
	return seed, pub, err
}

// CredentialOptions are the options of a plain NATS connection holding creds (a credentials
// file's content): the user JWT and key, and the holder's own inbox prefix, where it may
// receive replies.
func CredentialOptions(creds []byte) ([]nats.Option, error) {
	opts, _, err := credsOptions(creds)
	return opts, err
}

// credsOptions also returns the holder's name (system:node:<name> for a node).
func credsOptions(creds []byte) ([]nats.Option, string, error) {
	token, err := jwt.ParseDecoratedJWT(creds)
	if err != nil {
		return nil, "", fmt.Errorf("eventlog: credentials: %w", err)
	}
	kp, err := jwt.ParseDecoratedNKey(creds)
	if err != nil {
		return nil, "", fmt.Errorf("eventlog: credentials: %w", err)
	}
	seed, err := kp.Seed()
	if err != nil {
		return nil, "", fmt.Errorf("eventlog: credentials: %w", err)
	}
	uc, err := jwt.DecodeUserClaims(token)
	if err != nil {
		return nil, "", fmt.Errorf("eventlog: credentials: %w", err)
	}
	opts := []nats.Option{nats.UserJWTAndSeed(token, string(seed))}
	// A credential that may subscribe only to its own inbox must get its replies there.
	for _, sub := range uc.Sub.Allow {
		if strings.HasPrefix(sub, "_INBOX_") && strings.HasSuffix(sub, ".>") {
			opts = append(opts, nats.CustomInboxPrefix(strings.TrimSuffix(sub, ".>")))
			break
		}
	}
	return opts, uc.Name, nil
}
