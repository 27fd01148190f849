package clusterdns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sync/singleflight"
	"k8s.io/utils/clock"
)

// ErrNoUpstream is returned (and answered as SERVFAIL) when a name must be forwarded and no
// upstream server is left once this server's own addresses are taken out.
var ErrNoUpstream = errors.New("clusterdns: no upstream DNS server")

// upstreamBufSize is the EDNS0 buffer size offered to upstream servers (the DNS flag day
// 2020 figure, which avoids IP fragmentation).
const upstreamBufSize = 1232

// forwarder sends questions outside the cluster domain to the host's resolvers and caches
// their answers for as long as their TTLs allow.
type forwarder struct {
	upstreams []netip.AddrPort
	timeout   time.Duration
	clock     clock.PassiveClock
	cache     *cache
	flight    singleflight.Group

	mu   sync.RWMutex
	self []netip.AddrPort // where this server listens: never an upstream
}

// parseUpstream reads "ip", "ip:port" or "[ip6]:port"; the port defaults to 53.
func parseUpstream(s string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("clusterdns: upstream %q is not an address: %w", s, err)
	}
	return netip.AddrPortFrom(a.Unmap(), 53), nil
}

func (f *forwarder) addSelf(addr net.Addr) {
	var ap netip.AddrPort
	switch a := addr.(type) {
	case *net.UDPAddr:
		ap = a.AddrPort()
	case *net.TCPAddr:
		ap = a.AddrPort()
	default:
		p, err := netip.ParseAddrPort(addr.String())
		if err != nil {
			return
		}
		ap = p
	}
	f.mu.Lock()
	f.self = append(f.self, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
	f.mu.Unlock()
}

// isSelf tells whether an upstream is this server: one of its listeners, or any loopback
// or local address on the port of a listener bound to the unspecified address.
func (f *forwarder) isSelf(u netip.AddrPort) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	for _, s := range f.self {
		if s == u {
			return true
		}
		if s.Addr().IsUnspecified() && s.Port() == u.Port() && (u.Addr().IsLoopback() || isLocal(u.Addr())) {
			return true
		}
	}
	return false
}

func isLocal(a netip.Addr) bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, ia := range addrs {
		if n, ok := ia.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap() == a {
				return true
			}
		}
	}
	return false
}

type cacheKey struct {
	name  string
	qtype uint16
	do    bool
}

// lookup answers name (lowercased, fully qualified) from the cache or the upstreams. The
// message it returns is the caller's to change: its records are copies whose TTLs count
// down from when the upstream answered.
func (f *forwarder) lookup(ctx context.Context, name string, qtype uint16, do bool) (*dns.Msg, error) {
	k := cacheKey{name, qtype, do}
	if m := f.cache.get(k, f.clock.Now()); m != nil {
		return m, nil
	}
	v, err, _ := f.flight.Do(name+"/"+strconv.Itoa(int(qtype))+"/"+strconv.FormatBool(do), func() (any, error) {
		// Another lookup may have filled the cache while this one waited to start.
		if m := f.cache.get(k, f.clock.Now()); m != nil {
			return m, nil
		}
		m, err := f.exchange(ctx, name, qtype, do)
		if err != nil {
			return nil, err
		}
		f.cache.put(k, m, f.clock.Now())
		return m, nil
	})
	if err != nil {
		return nil, err
	}
	return copyMsg(v.(*dns.Msg), 0), nil
}

// exchange asks the upstreams in order until one answers; a truncated answer over UDP is
// asked again over TCP.
func (f *forwarder) exchange(ctx context.Context, name string, qtype uint16, do bool) (*dns.Msg, error) {
	q := new(dns.Msg)
	q.SetQuestion(name, qtype)
	q.RecursionDesired = true
	q.SetEdns0(upstreamBufSize, do)
	var errs []error
	for _, u := range f.upstreams {
		if f.isSelf(u) {
			continue
		}
		addr := u.String()
		c := &dns.Client{Net: "udp", Timeout: f.timeout, UDPSize: upstreamBufSize}
		m, _, err := c.ExchangeContext(ctx, q, addr)
		if err == nil && m.Truncated {
			c.Net = "tcp"
			m, _, err = c.ExchangeContext(ctx, q, addr)
		}
		if err == nil && (len(m.Question) != 1 || !strings.EqualFold(m.Question[0].Name, name) || m.Question[0].Qtype != qtype) {
			err = fmt.Errorf("answer for %v, not %s %s", m.Question, name, dns.TypeToString[qtype])
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("clusterdns: upstream %s: %w", addr, err))
			continue
		}
		m.Extra = withoutOPT(m.Extra)
		return m, nil
	}
	if len(errs) == 0 {
		return nil, ErrNoUpstream
	}
	return nil, errors.Join(errs...)
}

func withoutOPT(rrs []dns.RR) []dns.RR {
	out := rrs[:0]
	for _, rr := range rrs {
		if rr.Header().Rrtype != dns.TypeOPT {
			out = append(out, rr)
		}
	}
	return out
}

// copyMsg copies the parts of an upstream answer a reply carries, every TTL lowered by age
// seconds.
func copyMsg(m *dns.Msg, age uint32) *dns.Msg {
	out := &dns.Msg{}
	out.Rcode = m.Rcode
	out.Answer = copyRRs(m.Answer, age)
	out.Ns = copyRRs(m.Ns, age)
	out.Extra = copyRRs(m.Extra, age)
	return out
}

func copyRRs(rrs []dns.RR, age uint32) []dns.RR {
	if len(rrs) == 0 {
		return nil
	}
	out := make([]dns.RR, len(rrs))
	for i, rr := range rrs {
		c := dns.Copy(rr)
		if h := c.Header(); h.Ttl > age {
			h.Ttl -= age
		} else {
			h.Ttl = 0
		}
		out[i] = c
	}
	return out
}

// cache holds upstream answers: a positive answer for the smallest TTL of its records, a
// negative one (NXDOMAIN, or NODATA) for its SOA's negative TTL (RFC 2308), each capped;
// answers with a TTL of 0, SERVFAILs and the like are not kept. When full, expired entries
// go first, then arbitrary ones.
type cache struct {
	mu      sync.RWMutex
	entries map[cacheKey]*cacheEntry
	size    int
	maxTTL  time.Duration
	maxNeg  time.Duration
}

type cacheEntry struct {
	msg     *dns.Msg
	stored  time.Time
	expires time.Time
}

func newCache(size int, maxTTL, maxNeg time.Duration) *cache {
	return &cache{entries: map[cacheKey]*cacheEntry{}, size: size, maxTTL: maxTTL, maxNeg: maxNeg}
}

func (c *cache) get(k cacheKey, now time.Time) *dns.Msg {
	c.mu.RLock()
	e := c.entries[k]
	c.mu.RUnlock()
	if e == nil || !now.Before(e.expires) {
		return nil
	}
	age := now.Sub(e.stored)
	if age < 0 {
		age = 0
	}
	return copyMsg(e.msg, uint32(age/time.Second))
}

func (c *cache) put(k cacheKey, m *dns.Msg, now time.Time) {
	ttl, ok := cacheTTL(m)
	if !ok || c.size <= 0 {
		return
	}
	limit := c.maxTTL
	if m.Rcode == dns.RcodeNameError || len(m.Answer) == 0 {
		limit = c.maxNeg
	}
	d := min(time.Duration(ttl)*time.Second, limit)
	if d <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.size {
		for ek, e := range c.entries {
			if !now.Before(e.expires) {
				delete(c.entries, ek)
			}
		}
		for ek := range c.entries {
			if len(c.entries) < c.size {
				break
			}
			delete(c.entries, ek)
		}
	}
	c.entries[k] = &cacheEntry{msg: m, stored: now, expires: now.Add(d)}
}

// cacheTTL is how long an upstream answer may be kept, in seconds.
func cacheTTL(m *dns.Msg) (uint32, bool) {
	if m.Truncated {
		return 0, false
	}
	switch {
	case m.Rcode == dns.RcodeSuccess && len(m.Answer) > 0:
		ttl := ^uint32(0)
		for _, sec := range [][]dns.RR{m.Answer, m.Ns} {
			for _, rr := range sec {
				ttl = min(ttl, rr.Header().Ttl)
			}
		}
		return ttl, true
	case m.Rcode == dns.RcodeSuccess || m.Rcode == dns.RcodeNameError:
		for _, rr := range m.Ns {
			if soa, ok := rr.(*dns.SOA); ok {
				return min(soa.Hdr.Ttl, soa.Minttl), true
			}
		}
	}
	return 0, false
}
