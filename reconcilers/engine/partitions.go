package engine

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/utils/clock"

	"github.com/logplane/logplane/eventlog"
)

// leases is what partition ownership needs of eventlog.Leases.
type leases interface {
	TTL() time.Duration
	Acquire(ctx context.Context, name, holder string) (eventlog.Lease, error)
	Renew(ctx context.Context, l eventlog.Lease) (eventlog.Lease, error)
	Release(ctx context.Context, l eventlog.Lease) error
	Holders(ctx context.Context, prefix string) (map[string]string, error)
}

var _ leases = (*eventlog.Leases)(nil)

// Partitions shares a fixed number of partitions among the live replicas of a reconciler set.
// Each replica announces itself with a member lease, computes its fair share (partitions divided
// by members, rounded up), claims free partitions with leases until it has its share, and gives
// back what it holds beyond it, so that a new replica gets work within a few renewals and a dead
// one's partitions are taken over once its leases expire. A key belongs to partition
// hash(key) mod count.
type Partitions struct {
	leases leases
	holder string
	count  int
	log    *slog.Logger
	clock  clock.WithTicker // times the renewals

	mu    sync.RWMutex
	owned map[int]eventlog.Lease

	changed func(gained, lost []int)
}

// NewPartitions returns the partition ownership of holder (a name unique to this replica) among
// count partitions. changed is called from Run whenever partitions are gained or lost.
func NewPartitions(ls leases, holder string, count int, log *slog.Logger, changed func(gained, lost []int)) *Partitions {
	if log == nil {
		log = slog.Default()
	}
	return &Partitions{leases: ls, holder: holder, count: count, log: log, clock: clock.RealClock{}, owned: map[int]eventlog.Lease{}, changed: changed}
}

// Of returns the partition of a key.
func (p *Partitions) Of(key string) int {
	h := fnv.New32a()
	h.Write([]byte(key))
	return int(h.Sum32() % uint32(p.count))
}

// Owns reports whether this replica holds the partition of key.
func (p *Partitions) Owns(key string) bool { return p.OwnsPartition(p.Of(key)) }

// OwnsPartition reports whether this replica holds partition n.
func (p *Partitions) OwnsPartition(n int) bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	_, ok := p.owned[n]
	return ok
}

// Owned returns the partitions this replica holds, in order.
func (p *Partitions) Owned() []int {
	p.mu.RLock()
	defer p.mu.RUnlock()
	out := make([]int, 0, len(p.owned))
	for n := range p.owned {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

const memberPrefix = "member/"

func partitionName(n int) string { return "partition/" + strconv.Itoa(n) }

// Run keeps the leases until ctx ends, then releases them so others take over at once.
func (p *Partitions) Run(ctx context.Context) error {
	every := p.leases.TTL() / 3
	t := p.clock.NewTicker(every)
	defer t.Stop()
	var member eventlog.Lease
	for {
		var err error
		member, err = p.round(ctx, member)
		if err != nil && ctx.Err() == nil {
			p.log.Warn("engine: partition round", "holder", p.holder, "err", err)
		}
		select {
		case <-ctx.Done():
			p.releaseAll(member)
			return nil
		case <-t.C():
		}
	}
}

func (p *Partitions) round(ctx context.Context, member eventlog.Lease) (eventlog.Lease, error) {
	var err error
	if member.Name == "" {
		member, err = p.leases.Acquire(ctx, memberPrefix+p.holder, p.holder)
	} else if member, err = p.leases.Renew(ctx, member); errors.Is(err, eventlog.ErrLost) {
		member, err = p.leases.Acquire(ctx, memberPrefix+p.holder, p.holder)
	}
	if err != nil {
		return eventlog.Lease{}, fmt.Errorf("member lease: %w", err)
	}

	var gained, lost []int
	p.mu.RLock()
	held := make(map[int]eventlog.Lease, len(p.owned))
	for n, l := range p.owned {
		held[n] = l
	}
	p.mu.RUnlock()
	for n, l := range held {
		nl, err := p.leases.Renew(ctx, l)
		if err != nil {
			delete(held, n)
			lost = append(lost, n)
			continue
		}
		held[n] = nl
	}

	members, err := p.leases.Holders(ctx, memberPrefix)
	if err != nil {
		p.commit(held, gained, lost)
		return member, err
	}
	share := (p.count + len(members) - 1) / max(len(members), 1)

	// Give back what is beyond the fair share, highest partitions first.
	if extra := len(held) - share; extra > 0 {
		ns := make([]int, 0, len(held))
		for n := range held {
			ns = append(ns, n)
		}
		slices.Sort(ns)
		for _, n := range ns[len(ns)-extra:] {
			if err := p.leases.Release(ctx, held[n]); err != nil {
				p.log.Warn("engine: releasing partition", "partition", n, "err", err)
			}
			delete(held, n)
			lost = append(lost, n)
		}
	}
	// Claim free partitions up to the share, starting at a place that depends on the holder so
	// that replicas starting together do not all race for the same ones.
	if len(held) < share {
		holders, err := p.leases.Holders(ctx, "partition/")
		if err != nil {
			p.commit(held, gained, lost)
			return member, err
		}
		start := p.Of(p.holder)
		for i := 0; i < p.count && len(held) < share; i++ {
			n := (start + i) % p.count
			if _, mine := held[n]; mine {
				continue
			}
			if h, taken := holders[partitionName(n)]; taken && h != p.holder {
				continue
			}
			l, err := p.leases.Acquire(ctx, partitionName(n), p.holder)
			if err != nil {
				continue // taken meanwhile
			}
			held[n] = l
			gained = append(gained, n)
		}
	}
	p.commit(held, gained, lost)
	return member, nil
}

func (p *Partitions) commit(held map[int]eventlog.Lease, gained, lost []int) {
	p.mu.Lock()
	p.owned = held
	p.mu.Unlock()
	if (len(gained) > 0 || len(lost) > 0) && p.changed != nil {
		slices.Sort(gained)
		slices.Sort(lost)
		p.changed(gained, lost)
	}
}

func (p *Partitions) releaseAll(member eventlog.Lease) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	p.mu.Lock()
	owned := p.owned
	p.owned = map[int]eventlog.Lease{}
	p.mu.Unlock()
	for _, l := range owned {
		if err := p.leases.Release(ctx, l); err != nil {
			p.log.Warn("engine: releasing partition on shutdown", "lease", l.Name, "err", err)
		}
	}
	if member.Name != "" {
		if err := p.leases.Release(ctx, member); err != nil {
			p.log.Warn("engine: releasing member lease", "err", err)
		}
	}
}

// String describes the ownership, for logs.
func (p *Partitions) String() string {
	owned := p.Owned()
	s := make([]string, len(owned))
	for i, n := range owned {
		s[i] = strconv.Itoa(n)
	}
	return fmt.Sprintf("%s owns %d/%d [%s]", p.holder, len(owned), p.count, strings.Join(s, ","))
}
