package crilog

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// Options select what Read copies. They mirror `kubectl logs`.
type Options struct {
	// Follow keeps reading at the end of the file until ctx ends or Done
	// reports that no more will be written.
	Follow bool
	// TailLines, when >= 0, starts that many lines before the end.
	TailLines int64
	// Since, when not zero, skips records older than it.
	Since time.Time
	// Timestamps prefixes each line with its RFC3339Nano time.
	Timestamps bool
	// LimitBytes, when > 0, stops after that many bytes of output.
	LimitBytes int64
	// Done, when set with Follow, tells that the writer has finished
	// (the container exited): Read returns once it has drained the file.
	Done func() bool
	// PollInterval is how often a follower looks for new records (100ms if 0).
	PollInterval time.Duration
}

// Record is one parsed log record.
type Record struct {
	Time    time.Time
	Stream  string
	Partial bool
	Content []byte
}

// ErrBadRecord is returned by ParseRecord for a line not in the CRI format.
var ErrBadRecord = errors.New("crilog: bad record")

// ParseRecord parses one line (without its newline).
func ParseRecord(line []byte) (Record, error) {
	var r Record
	i := bytes.IndexByte(line, ' ')
	if i < 0 {
		return r, fmt.Errorf("%w: no time in %q", ErrBadRecord, line)
	}
	t, err := time.Parse(time.RFC3339Nano, string(line[:i]))
	if err != nil {
		return r, fmt.Errorf("%w: time: %w", ErrBadRecord, err)
	}
	rest := line[i+1:]
	j := bytes.IndexByte(rest, ' ')
	if j < 0 {
		return r, fmt.Errorf("%w: no stream in %q", ErrBadRecord, line)
	}
	r.Time, r.Stream = t, string(rest[:j])
	rest = rest[j+1:]
	if len(rest) < 1 {
		return r, fmt.Errorf("%w: no tag in %q", ErrBadRecord, line)
	}
	r.Partial = rest[0] == 'P'
	if len(rest) > 1 {
		r.Content = rest[2:]
	}
	return r, nil
}

// Read copies the records of the log at path to w as `kubectl logs` shows
// them. A missing file is an empty log unless following, in which case Read
// waits for it.
func Read(ctx context.Context, path string, opts Options, w io.Writer) error {
	poll := opts.PollInterval
	if poll <= 0 {
		poll = 100 * time.Millisecond
	}
	f, err := openWait(ctx, path, opts, poll)
	if err != nil || f == nil {
		return err
	}
	defer f.Close()

	if opts.TailLines >= 0 {
		off, err := tailOffset(f, opts.TailLines)
		if err != nil {
			return err
		}
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			return fmt.Errorf("crilog: seek: %w", err)
		}
	}
	out := &limitWriter{w: w, left: opts.LimitBytes}
	r := bufio.NewReaderSize(f, 64*1024)
	var pending []byte // an incomplete line read at EOF
	for {
		chunk, err := r.ReadBytes('\n')
		if len(chunk) > 0 {
			pending = append(pending, chunk...)
		}
		if err == nil {
			line := pending[:len(pending)-1]
			if werr := emit(line, opts, out); werr != nil {
				if errors.Is(werr, errLimit) {
					return nil
				}
				return werr
			}
			pending = pending[:0]
			continue
		}
		if !errors.Is(err, io.EOF) {
			return fmt.Errorf("crilog: read %s: %w", path, err)
		}
		if !opts.Follow {
			return nil
		}
		// Check Done before sleeping, then drain once more after it turns
		// true, so no record written before the end is lost.
		done := opts.Done != nil && opts.Done()
		if done && len(pending) == 0 {
			more, err := r.Peek(1)
			if len(more) == 0 || err != nil {
				return nil
			}
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(poll):
		}
	}
}

var errLimit = errors.New("crilog: byte limit reached")

type limitWriter struct {
	w    io.Writer
	left int64 // <= 0 at start means no limit
	used int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if l.left > 0 {
		room := l.left - l.used
		if room <= 0 {
			return 0, errLimit
		}
		if int64(len(p)) > room {
			n, err := l.w.Write(p[:room])
			l.used += int64(n)
			if err != nil {
				return n, err
			}
			return n, errLimit
		}
	}
	n, err := l.w.Write(p)
	l.used += int64(n)
	return n, err
}

func emit(line []byte, opts Options, w io.Writer) error {
	rec, err := ParseRecord(line)
	if err != nil {
		return err
	}
	if !opts.Since.IsZero() && rec.Time.Before(opts.Since) {
		return nil
	}
	var b bytes.Buffer
	if opts.Timestamps {
		b.WriteString(rec.Time.Format(time.RFC3339Nano))
		b.WriteByte(' ')
	}
	b.Write(rec.Content)
	if !rec.Partial {
		b.WriteByte('\n')
	}
	_, err = w.Write(b.Bytes())
	return err
}

func openWait(ctx context.Context, path string, opts Options, poll time.Duration) (*os.File, error) {
	for {
		f, err := os.Open(path)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("crilog: open: %w", err)
		}
		if !opts.Follow || (opts.Done != nil && opts.Done()) {
			return nil, nil
		}
		select {
		case <-ctx.Done():
			return nil, nil
		case <-time.After(poll):
		}
	}
}

// tailOffset returns the offset of the start of the n-th last full line
// (a run of P records and their F record count as one line).
func tailOffset(f *os.File, n int64) (int64, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return 0, fmt.Errorf("crilog: seek: %w", err)
	}
	var starts []int64 // offsets where a logical line starts
	var off int64
	lineStart := true
	r := bufio.NewReaderSize(f, 64*1024)
	for {
		rec, err := r.ReadBytes('\n')
		if len(rec) > 0 && rec[len(rec)-1] == '\n' {
			if lineStart {
				starts = append(starts, off)
			}
			p, perr := ParseRecord(rec[:len(rec)-1])
			lineStart = perr != nil || !p.Partial
			off += int64(len(rec))
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return 0, fmt.Errorf("crilog: read: %w", err)
		}
	}
	if int64(len(starts)) <= n {
		return 0, nil
	}
	if n == 0 {
		return off, nil
	}
	return starts[int64(len(starts))-n], nil
}
