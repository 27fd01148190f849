package clusterdns

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/miekg/dns"
	"k8s.io/utils/clock"
)

// PodMode says how pod names ("1-2-3-4.<ns>.pod.<domain>") are answered, as CoreDNS's
// kubernetes plugin's pods option does.
type PodMode string

const (
	// PodsInsecure answers any well-formed name in an existing namespace with the address it
	// spells (kubeadm's CoreDNS configuration). The default.
	PodsInsecure PodMode = "insecure"
	// PodsVerified answers only the addresses of pods given to UpsertPod, in their namespace.
	PodsVerified PodMode = "verified"
	// PodsDisabled answers NXDOMAIN for every pod name.
	PodsDisabled PodMode = "disabled"
)

// Config shapes a Server.
type Config struct {
	// Domain is the cluster domain. Default "cluster.local".
	Domain string
	// TTL of the records the server makes, and the negative TTL of its SOA. Default 30
	// seconds (kubeadm's CoreDNS configuration).
	TTL uint32
	// Pods is how pod names are answered. Default PodsInsecure.
	Pods PodMode
	// Host is the host's resolver configuration: its nameservers are the upstreams for names
	// outside the cluster domain ("ip", or "ip:port"), its search domains follow the
	// cluster's in the pods' search path (autopath). Default: read from ResolvConf.
	Host *ResolvConf
	// ResolvConf is the file Host is read from when Host is nil. Default "/etc/resolv.conf".
	ResolvConf string
	// Self are addresses that are this server (the kube-dns Service's cluster IP, a
	// node-local address): a nameserver among them is never an upstream. The addresses the
	// server listens on are never upstreams either.
	Self []netip.Addr
	// NameserverAddrs answer ns.dns.<domain>, the target of the domain's NS record. Default
	// none.
	NameserverAddrs []netip.Addr
	// NoAutopath turns autopath off. With it on (the default), a question for
	// "<name>.<ns>.svc.<domain>" from a pod given to UpsertPod, whose search path starts with
	// "<ns>.svc.<domain>", is answered as the pod's resolver would end its search: each
	// search domain is tried in turn, then the name alone, and the first answer that is not
	// NXDOMAIN is returned behind a CNAME from the asked name (CoreDNS's autopath plugin).
	NoAutopath bool
	// CacheSize is how many upstream answers are kept. Default 10000; negative: none.
	CacheSize int
	// MaxTTL and MaxNegativeTTL cap how long an upstream answer is kept. Defaults 1 hour and
	// 30 minutes (CoreDNS's cache plugin).
	MaxTTL, MaxNegativeTTL time.Duration
	// UpstreamTimeout bounds one exchange with one upstream. Default 2 seconds.
	UpstreamTimeout time.Duration
	// UDPSize is the EDNS0 buffer size the server advertises, and the largest UDP answer it
	// sends. Default 1232.
	UDPSize uint16
	// Clock for cache expiry and the SOA serial. Default the real clock.
	Clock clock.PassiveClock
	// Errors receives what a query could not be told: a panic while answering (the query
	// gets SERVFAIL and the server goes on) or an answer that would not pack. Default: none.
	Errors func(error)
}

// Server is a cluster DNS server. Feed it with the Upsert and Delete methods; serve it with
// ServePacket and ServeStream on any number of listeners. All methods are safe to call
// concurrently.
type Server struct {
	domain      string // lowercased, fully qualified
	domainNoDot string
	nsName      string // ns.dns.<domain>, the SOA's and NS record's server
	mbox        string // hostmaster.<domain>
	ttl         uint32
	podMode     PodMode
	nsAddrs     []netip.Addr
	hostSearch  []string
	autopath    bool
	udpSize     uint16
	clock       clock.PassiveClock
	errs        func(error)
	idx         *index
	fwd         *forwarder
}

// New makes a server. It reads the host's resolv.conf when Config.Host is nil.
func New(cfg Config) (*Server, error) {
	if cfg.Domain == "" {
		cfg.Domain = "cluster.local"
	}
	if cfg.TTL == 0 {
		cfg.TTL = 30
	}
	if cfg.Pods == "" {
		cfg.Pods = PodsInsecure
	}
	switch cfg.Pods {
	case PodsInsecure, PodsVerified, PodsDisabled:
	default:
		return nil, fmt.Errorf("clusterdns: unknown pod mode %q", cfg.Pods)
	}
	if cfg.ResolvConf == "" {
		cfg.ResolvConf = "/etc/resolv.conf"
	}
	if cfg.CacheSize == 0 {
		cfg.CacheSize = 10000
	}
	if cfg.MaxTTL == 0 {
		cfg.MaxTTL = time.Hour
	}
	if cfg.MaxNegativeTTL == 0 {
		cfg.MaxNegativeTTL = 30 * time.Minute
	}
	if cfg.UpstreamTimeout == 0 {
		cfg.UpstreamTimeout = 2 * time.Second
	}
	if cfg.UDPSize == 0 {
		cfg.UDPSize = 1232
	}
	if cfg.UDPSize < 512 {
		return nil, fmt.Errorf("clusterdns: UDPSize %d is below 512", cfg.UDPSize)
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	domain := strings.ToLower(strings.Trim(cfg.Domain, "."))
	if _, ok := dns.IsDomainName(domain); !ok || domain == "" {
		return nil, fmt.Errorf("clusterdns: %q is not a domain name", cfg.Domain)
	}
	host := cfg.Host
	if host == nil {
		f, err := os.Open(cfg.ResolvConf)
		if err != nil {
			return nil, fmt.Errorf("clusterdns: %w", err)
		}
		rc, err := ParseResolvConf(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("clusterdns: %s: %w", cfg.ResolvConf, err)
		}
		host = &rc
	}
	s := &Server{
		domain: domain + ".", domainNoDot: domain, nsName: "ns.dns." + domain + ".", mbox: "hostmaster." + domain + ".", ttl: cfg.TTL, podMode: cfg.Pods, nsAddrs: cfg.NameserverAddrs,
		autopath: !cfg.NoAutopath, udpSize: cfg.UDPSize, clock: cfg.Clock, errs: cfg.Errors, idx: newIndex(),
	}
	for _, d := range host.Searches {
		if d = strings.Trim(d, "."); d != "" {
			s.hostSearch = append(s.hostSearch, d)
		}
	}
	s.fwd = &forwarder{timeout: cfg.UpstreamTimeout, clock: cfg.Clock, cache: newCache(cfg.CacheSize, cfg.MaxTTL, cfg.MaxNegativeTTL)}
	self := map[netip.Addr]bool{}
	for _, a := range cfg.Self {
		self[a.Unmap()] = true
	}
	for _, ns := range host.Nameservers {
		u, err := parseUpstream(ns)
		if err != nil {
			return nil, err
		}
		if !self[u.Addr()] {
			s.fwd.upstreams = append(s.fwd.upstreams, u)
		}
	}
	s.idx.serial = uint32(cfg.Clock.Now().Unix())
	return s, nil
}

// ServePacket answers DNS over UDP (or any packet connection) on pc until ctx ends, then
// closes pc. Its address is never used as an upstream.
func (s *Server) ServePacket(ctx context.Context, pc net.PacketConn) error {
	s.fwd.addSelf(pc.LocalAddr())
	srv := &dns.Server{PacketConn: pc, Net: "udp", UDPSize: int(s.udpSize), Handler: s.handler(ctx, true)}
	return serve(ctx, srv)
}

// ServeStream answers DNS over TCP (or any stream listener) on ln until ctx ends, then
// closes ln. Its address is never used as an upstream.
func (s *Server) ServeStream(ctx context.Context, ln net.Listener) error {
	s.fwd.addSelf(ln.Addr())
	srv := &dns.Server{Listener: ln, Net: "tcp", Handler: s.handler(ctx, false)}
	return serve(ctx, srv)
}

func serve(ctx context.Context, srv *dns.Server) error {
	done := make(chan error, 1)
	go func() { done <- srv.ActivateAndServe() }()
	select {
	case err := <-done:
		return fmt.Errorf("clusterdns: serving: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.ShutdownContext(sctx); err != nil {
		return fmt.Errorf("clusterdns: shutting down: %w", err)
	}
	if err := <-done; err != nil {
		return fmt.Errorf("clusterdns: serving: %w", err)
	}
	return nil
}

// handler answers the queries of one listener; udp says whether answers must fit the
// client's datagram buffer.
func (s *Server) handler(ctx context.Context, udp bool) dns.Handler {
	return dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		var src netip.Addr
		switch a := w.RemoteAddr().(type) {
		case *net.UDPAddr:
			src = a.AddrPort().Addr().Unmap()
		case *net.TCPAddr:
			src = a.AddrPort().Addr().Unmap()
		}
		b, err := s.pack(ctx, src, r, udp)
		if err != nil {
			s.report(err)
			m := new(dns.Msg)
			m.SetRcode(r, dns.RcodeServerFailure)
			if b, err = m.Pack(); err != nil {
				s.report(fmt.Errorf("clusterdns: packing SERVFAIL: %w", err))
				return
			}
		}
		// A write error means the client is gone: there is no one left to tell.
		_, _ = w.Write(b)
	})
}

// pack answers r, turning a panic into an error.
func (s *Server) pack(ctx context.Context, src netip.Addr, r *dns.Msg, udp bool) (b []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("clusterdns: panic answering %v: %v", r.Question, p)
		}
	}()
	b, err = s.Answer(ctx, src, r, udp).Pack()
	if err != nil {
		return nil, fmt.Errorf("clusterdns: answer to %v does not pack: %w", r.Question, err)
	}
	return b, nil
}

func (s *Server) report(err error) {
	if s.errs != nil {
		s.errs(err)
	}
}

// Answer answers one query from src, as the server does for a query that arrived over UDP
// (udp true: the answer is truncated to the client's buffer size) or TCP. It never fails:
// malformed queries get FORMERR, unsupported ones NOTIMP or REFUSED, and upstream failures
// SERVFAIL.
func (s *Server) Answer(ctx context.Context, src netip.Addr, r *dns.Msg, udp bool) *dns.Msg {
	var m *dns.Msg
	if opt := r.IsEdns0(); opt != nil && opt.Version() != 0 {
		m = &dns.Msg{MsgHdr: dns.MsgHdr{Rcode: dns.RcodeBadVers}} // RFC 6891 6.1.3: not answered
	} else {
		m = s.answer(ctx, src, r)
	}
	m.Id = r.Id
	m.Response = true
	m.Opcode = r.Opcode
	m.RecursionDesired = r.RecursionDesired
	m.RecursionAvailable = true
	m.CheckingDisabled = r.CheckingDisabled
	if len(r.Question) > 0 {
		m.Question = []dns.Question{r.Question[0]}
	}
	size := 512
	if opt := r.IsEdns0(); opt != nil {
		size = max(512, min(int(opt.UDPSize()), int(s.udpSize)))
		o := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		o.SetUDPSize(s.udpSize)
		o.SetDo(opt.Do())
		if m.Rcode > 0xF {
			o.SetExtendedRcode(uint16(m.Rcode))
		}
		m.Extra = append(m.Extra, o)
	} else if m.Rcode > 0xF {
		m.Rcode = dns.RcodeServerFailure
	}
	if !udp {
		size = dns.MaxMsgSize
	}
	// Most answers fit as they are: compression and truncation only for those that do not.
	if m.Len() > size {
		m.Compress = true
		m.Truncate(size)
	}
	return m
}

func (s *Server) answer(ctx context.Context, src netip.Addr, r *dns.Msg) *dns.Msg {
	fail := func(rcode int) *dns.Msg { return &dns.Msg{MsgHdr: dns.MsgHdr{Rcode: rcode}} }
	if r.Response {
		return fail(dns.RcodeFormatError)
	}
	if r.Opcode != dns.OpcodeQuery {
		return fail(dns.RcodeNotImplemented)
	}
	if len(r.Question) != 1 {
		return fail(dns.RcodeFormatError)
	}
	q := r.Question[0]
	if q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY {
		return fail(dns.RcodeRefused)
	}
	switch q.Qtype {
	case dns.TypeAXFR, dns.TypeIXFR, dns.TypeOPT, dns.TypeNone:
		return fail(dns.RcodeRefused)
	}
	if _, ok := dns.IsDomainName(q.Name); !ok || !dns.IsFqdn(q.Name) {
		return fail(dns.RcodeFormatError)
	}
	do := false
	if opt := r.IsEdns0(); opt != nil {
		do = opt.Do()
	}
	if s.autopath {
		if m := s.autopathAnswer(ctx, src, q, do); m != nil {
			return m
		}
	}
	return s.resolve(ctx, q.Name, q.Qtype, do)
}

// resolve answers one name: the cluster domain from the index, the reverse names of known
// addresses from the index, everything else from the upstreams (through the cache).
func (s *Server) resolve(ctx context.Context, qname string, qtype uint16, do bool) *dns.Msg {
	lower := strings.ToLower(qname)
	base, ok := s.inZone(lower)
	if !ok {
		if qtype == dns.TypePTR {
			if ip, ok := reverseAddr(lower); ok {
				if r, ok := s.ptrReply(qname, ip); ok {
					m := &dns.Msg{Answer: r.answer}
					m.Authoritative = true
					return m
				}
			}
		}
		return s.forward(ctx, lower, qtype, do)
	}
	m := &dns.Msg{}
	m.Authoritative = true
	name := qname
	for hops := 0; ; hops++ {
		r := s.zoneReply(name, base, qtype)
		m.Answer = append(m.Answer, r.answer...)
		m.Extra = append(m.Extra, r.extra...)
		m.Rcode = r.rcode
		if r.soa {
			m.Ns = []dns.RR{s.soa()}
		}
		if r.chase == "" || hops >= 8 {
			return m
		}
		name = r.chase
		if b, in := s.inZone(strings.ToLower(name)); in {
			base = b
			continue
		}
		up, err := s.fwd.lookup(ctx, strings.ToLower(name), qtype, do)
		if err != nil {
			return m // the CNAME alone: the client's resolver may follow it itself
		}
		m.Answer = append(m.Answer, up.Answer...)
		m.Ns = up.Ns
		m.Rcode = up.Rcode
		return m
	}
}

func (s *Server) forward(ctx context.Context, lower string, qtype uint16, do bool) *dns.Msg {
	m, err := s.fwd.lookup(ctx, lower, qtype, do)
	if err != nil {
		// No upstream answered (or none is configured, ErrNoUpstream): SERVFAIL, as a
		// resolver says it could not reach an answer.
		return &dns.Msg{MsgHdr: dns.MsgHdr{Rcode: dns.RcodeServerFailure}}
	}
	return m
}

// autopathAnswer walks a pod's search path on the server (see Config.NoAutopath). It
// returns nil when autopath does not apply to the question.
func (s *Server) autopathAnswer(ctx context.Context, src netip.Addr, q dns.Question, do bool) *dns.Msg {
	if !src.IsValid() {
		return nil
	}
	s.idx.mu.RLock()
	p := s.idx.podByIP[src]
	s.idx.mu.RUnlock()
	if p == nil || len(p.searches) == 0 {
		return nil
	}
	first := p.searches[0]
	if len(q.Name) <= len(first)+1 {
		return nil
	}
	cut := len(q.Name) - len(first)
	if q.Name[cut-1] != '.' || !strings.EqualFold(q.Name[cut:], first) {
		return nil
	}
	base := q.Name[:cut] // with its trailing dot
	for i := 0; i <= len(p.searches); i++ {
		name := base
		switch {
		case i == 0:
			name = q.Name // as asked, so that its answer keeps the asker's case
		case i < len(p.searches):
			name = base + p.searches[i]
		}
		if _, ok := dns.IsDomainName(name); !ok || len(name) > 255 {
			continue
		}
		// A name of the cluster domain that does not exist costs no message.
		if zb, in := s.inZone(strings.ToLower(name)); in && s.zoneReply(name, zb, q.Qtype).rcode == dns.RcodeNameError {
			continue
		}
		m := s.resolve(ctx, name, q.Qtype, do)
		if m.Rcode != dns.RcodeSuccess {
			continue
		}
		if i > 0 {
			cnamer(m, q.Name)
		}
		return m
	}
	// Nothing but NXDOMAIN: the answer to the name as asked, and the client searches on.
	return s.resolve(ctx, q.Name, q.Qtype, do)
}

// cnamer puts a CNAME from the asked name to the name that answered in front of the
// answer, as CoreDNS's autopath does, so that the client's resolver accepts it.
func cnamer(m *dns.Msg, original string) {
	for _, a := range m.Answer {
		if strings.EqualFold(original, a.Header().Name) {
			continue
		}
		c := &dns.CNAME{Hdr: hdr(original, dns.TypeCNAME, a.Header().Ttl), Target: a.Header().Name}
		m.Answer = append([]dns.RR{c}, m.Answer...)
		break
	}
}
