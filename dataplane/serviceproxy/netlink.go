package serviceproxy

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// A sync that changes only elements of the table's sets and maps (an
// endpoint replaced by another, a Service without endpoints added or
// removed) is sent to the kernel as one netlink batch through
// github.com/google/nftables (which knftables itself uses to list), not
// through nft: nft 1.0.6 fetches every chain of the table before it
// changes an element, which makes each such sync cost O(Services) in a
// process of its own (22 ms of CPU with 10,000 Services, against 0.2 ms
// for the batch). Anything else (chains, rules, sets, and every full
// sync) stays with knftables and nft, in one transaction.

// elementsPerMessage bounds the elements of one netlink message: its list
// of elements is one attribute, whose length has 16 bits (64 KiB), and an
// element takes at most about 600 bytes (a 256-byte chain name, a comment).
const elementsPerMessage = 100

// commitElements writes changes to the kernel in one batch: every
// deletion, then every addition, as nft would.
func (p *Proxier) commitElements(changes []elementChanges) error {
	n := 0
	for _, c := range changes {
		n += len(c.dels) + len(c.adds)
	}
	// The batch is one message: the socket's send buffer must hold it
	// (the default, 208 KiB, holds about 3,000 elements). nft does the same.
	opts := []nftables.ConnOption{nftables.WithSockOptions(sendBuffer(64<<10 + 128*n))}
	if p.cfg.NetNS != "" {
		ns, err := os.Open(p.cfg.NetNS)
		if err != nil {
			return fmt.Errorf("network namespace: %w", err)
		}
		defer ns.Close()
		opts = append(opts, nftables.WithNetNSFd(int(ns.Fd())))
	}
	conn, err := nftables.New(opts...)
	if err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	table := &nftables.Table{Name: p.cfg.Table, Family: nftables.TableFamilyIPv4}
	for _, c := range changes {
		for keys := range slices.Chunk(c.dels, elementsPerMessage) {
			elems, err := c.store.netlinkElements(keys, false)
			if err == nil {
				err = conn.SetDeleteElements(&nftables.Set{Table: table, Name: c.store.name}, elems)
			}
			if err != nil {
				return fmt.Errorf("delete elements of %s: %w", c.store.name, err)
			}
		}
	}
	for _, c := range changes {
		for keys := range slices.Chunk(c.adds, elementsPerMessage) {
			elems, err := c.store.netlinkElements(keys, true)
			if err == nil {
				err = conn.SetAddElements(&nftables.Set{Table: table, Name: c.store.name, IsMap: c.store.isMap()}, elems)
			}
			if err != nil {
				return fmt.Errorf("add elements to %s: %w", c.store.name, err)
			}
		}
	}
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	return nil
}

// sendBuffer sets the socket's send buffer to at least size bytes, beyond
// net.core.wmem_max (SO_SNDBUFFORCE, which needs CAP_NET_ADMIN, as
// nftables itself).
func sendBuffer(size int) nftables.SockOption {
	return func(c *netlink.Conn) error {
		rc, err := c.SyscallConn()
		if err != nil {
			return err
		}
		var serr error
		err = rc.Control(func(fd uintptr) {
			cur, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF)
			if err == nil && cur >= size {
				return
			}
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, size)
		})
		if err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("send buffer of %d bytes: %w", size, serr)
		}
		return nil
	}
}

// netlinkElements encodes keys (with their values and comments when
// adding) as nft encodes them for this store's type.
func (s *elementStore) netlinkElements(keys []string, add bool) ([]nftables.SetElement, error) {
	out := make([]nftables.SetElement, 0, len(keys))
	for _, k := range keys {
		key, err := encodeFields(splitKey(k), s.kind == endpointMap)
		if err != nil {
			return nil, fmt.Errorf("element %q: %w", k, err)
		}
		e := nftables.SetElement{Key: key}
		if add {
			v := s.inKernel[k]
			switch s.kind {
			case verdictMap:
				if e.VerdictData, err = encodeVerdict(v); err != nil {
					return nil, fmt.Errorf("element %q: %w", k, err)
				}
			case endpointMap:
				if e.Val, err = encodeFields(splitKey(v), false); err != nil {
					return nil, fmt.Errorf("element %q: %w", k, err)
				}
			}
			e.Comment = s.comments[k]
		}
		out = append(out, e)
	}
	return out, nil
}

// encodeFields encodes a key or value as nft does: each field of a
// concatenation takes a multiple of 4 bytes; addresses, protocols and ports
// are in network order. index says the value is an endpoint map's key,
// numgen's output: 32 bits in host order.
func encodeFields(fields []string, index bool) ([]byte, error) {
	if index {
		n, err := strconv.ParseUint(fields[0], 10, 32)
		if err != nil || len(fields) != 1 {
			return nil, fmt.Errorf("not a balancing index")
		}
		return binary.NativeEndian.AppendUint32(nil, uint32(n)), nil
	}
	var b []byte
	for _, f := range fields {
		if a, err := netip.ParseAddr(f); err == nil && a.Is4() {
			ip := a.As4()
			b = append(b, ip[:]...)
		} else if proto, ok := ipProtocols[f]; ok {
			b = append(b, proto, 0, 0, 0)
		} else if port, err := strconv.ParseUint(f, 10, 16); err == nil {
			b = binary.BigEndian.AppendUint16(b, uint16(port))
			b = append(b, 0, 0)
		} else {
			return nil, fmt.Errorf("field %q is not an IPv4 address, protocol or port", f)
		}
	}
	return b, nil
}

var ipProtocols = map[string]byte{"tcp": 6, "udp": 17, "sctp": 132}

func encodeVerdict(v string) (*expr.Verdict, error) {
	if chain, ok := strings.CutPrefix(v, "goto "); ok {
		return &expr.Verdict{Kind: expr.VerdictGoto, Chain: chain}, nil
	}
	if v == "drop" {
		return &expr.Verdict{Kind: expr.VerdictDrop}, nil
	}
	return nil, fmt.Errorf("verdict %q not supported", v)
}
