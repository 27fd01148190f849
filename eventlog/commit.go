package eventlog

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// committer makes the embedded server's stream durable by group commit. The server writes every
// stored message to its current block file before it acknowledges it (its default "flush in
// place"), but with lazy fsync it does not sync. Sync waits for an fsync of the block files that
// started after Sync was called, so every message acknowledged before the call is on disk when it
// returns. Concurrent callers share one fsync: while one runs, the next group gathers.
type committer struct {
	dir string // the stream's msgs directory

	mu      sync.Mutex
	running bool
	waiting int           // callers waiting for the next round
	next    chan struct{} // closed when the next round has finished
	nextErr *error        // the next round's result, readable once next is closed

	// Only the round loop touches these.
	block    int      // number of the newest block file, 0 if none seen yet
	blockFD  *os.File // open on the newest block
	blockIno uint64
}

func newCommitter(dir string) *committer {
	var err error
	return &committer{dir: dir, next: make(chan struct{}), nextErr: &err}
}

// Sync returns once every message the server acknowledged before the call is on stable storage.
func (c *committer) Sync(ctx context.Context) error {
	c.mu.Lock()
	done, errp := c.next, c.nextErr
	c.waiting++
	if !c.running {
		c.running = true
		go c.loop()
	}
	c.mu.Unlock()
	select {
	case <-done:
		return *errp
	case <-ctx.Done():
		return fmt.Errorf("eventlog: waiting for commit: %w", ctx.Err())
	}
}

// loop runs rounds while anyone waits. A round takes the waiters gathered so far, installs a fresh
// channel for those who come during the fsync, syncs, and releases its own waiters.
func (c *committer) loop() {
	for {
		c.mu.Lock()
		if c.waiting == 0 {
			c.running = false
			c.mu.Unlock()
			return
		}
		done, errp := c.next, c.nextErr
		var err error
		c.next, c.nextErr, c.waiting = make(chan struct{}), &err, 0
		c.mu.Unlock()

		*errp = c.syncBlocks()
		close(done)
	}
}

// syncBlocks fsyncs the newest block file, and, when the server has moved on to new blocks since
// the last round, the blocks it wrote in between and the directory that names them.
func (c *committer) syncBlocks() error {
	if c.blockFD == nil {
		n, err := newestBlock(c.dir)
		if err != nil || n == 0 {
			return err
		}
		if err := c.open(n); err != nil {
			return err
		}
	}
	// Blocks are numbered in order; look for the ones created since the last round.
	for {
		next := c.block + 1
		if _, err := os.Stat(c.blockPath(next)); err != nil {
			if os.IsNotExist(err) {
				break
			}
			return fmt.Errorf("eventlog: commit: %w", err)
		}
		if err := c.blockFD.Sync(); err != nil {
			return fmt.Errorf("eventlog: commit: fsync %s: %w", c.blockFD.Name(), err)
		}
		if err := c.open(next); err != nil {
			return err
		}
	}
	// The server rewrites a block under the same name when it compacts it; follow the name.
	if ino, err := inode(c.blockPath(c.block)); err == nil && ino != c.blockIno {
		if err := c.open(c.block); err != nil {
			return err
		}
	}
	if err := c.blockFD.Sync(); err != nil {
		return fmt.Errorf("eventlog: commit: fsync %s: %w", c.blockFD.Name(), err)
	}
	return nil
}

// open makes block n the one followed, and syncs the directory so its name is durable too.
func (c *committer) open(n int) error {
	f, err := os.Open(c.blockPath(n))
	if err != nil {
		return fmt.Errorf("eventlog: commit: %w", err)
	}
	ino, err := inode(f.Name())
	if err != nil {
		f.Close()
		return err
	}
	if err := syncDir(c.dir); err != nil {
		f.Close()
		return err
	}
	if c.blockFD != nil {
		c.blockFD.Close()
	}
	c.block, c.blockFD, c.blockIno = n, f, ino
	return nil
}

func (c *committer) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.blockFD != nil && !c.running {
		c.blockFD.Close()
		c.blockFD = nil
	}
}

func (c *committer) blockPath(n int) string {
	return filepath.Join(c.dir, strconv.Itoa(n)+".blk")
}

func newestBlock(dir string) (int, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		if os.IsNotExist(err) {
			return 0, nil
		}
		return 0, fmt.Errorf("eventlog: commit: %w", err)
	}
	newest := 0
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".blk")
		if !ok {
			continue
		}
		if n, err := strconv.Atoi(name); err == nil && n > newest {
			newest = n
		}
	}
	return newest, nil
}

func inode(path string) (uint64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, fmt.Errorf("eventlog: commit: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, fmt.Errorf("eventlog: commit: no inode for %s", path)
	}
	return st.Ino, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("eventlog: commit: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("eventlog: commit: fsync %s: %w", dir, err)
	}
	return nil
}
