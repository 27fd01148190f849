// Package crilog writes and reads container logs in the Kubernetes CRI file
// format: one record a line, "<RFC3339Nano time> <stream> <tag> <content>",
// where stream is stdout or stderr and tag is F for a full line or P for a
// part of a longer line. `kubectl logs` options (follow, tail, since,
// timestamps, limit-bytes) are applied when reading. It knows nothing of
// containers: the runtime hands it files and streams.
package crilog

import (
	"bytes"
	"fmt"
	"io"
	"sync"
	"time"
)

// Streams.
const (
	Stdout = "stdout"
	Stderr = "stderr"
)

// MaxLineBytes is the longest content written in one record; longer lines are
// split into P records ended by an F record.
const MaxLineBytes = 16 * 1024

// File is a log file shared by the stdout and stderr writers of one
// container. Writes of whole records are serialized.
type File struct {
	mu  sync.Mutex
	w   io.Writer
	now func() time.Time
}

// NewFile returns a File writing records to w, stamped with now (time.Now if nil).
func NewFile(w io.Writer, now func() time.Time) *File {
	if now == nil {
		now = time.Now
	}
	return &File{w: w, now: now}
}

func (f *File) record(stream string, tag byte, content []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	var b bytes.Buffer
	b.Grow(len(content) + 48)
	b.WriteString(f.now().UTC().Format(time.RFC3339Nano))
	b.WriteByte(' ')
	b.WriteString(stream)
	b.WriteByte(' ')
	b.WriteByte(tag)
	b.WriteByte(' ')
	b.Write(content)
	b.WriteByte('\n')
	if _, err := f.w.Write(b.Bytes()); err != nil {
		return fmt.Errorf("crilog: write record: %w", err)
	}
	return nil
}

// Stream returns a writer that turns the bytes of one stream into records.
// Close it to flush a last line that has no newline.
func (f *File) Stream(stream string) *StreamWriter {
	return &StreamWriter{f: f, stream: stream}
}

// StreamWriter splits a stream into lines and writes them as records.
type StreamWriter struct {
	f      *File
	stream string
	buf    []byte
}

// Write implements io.Writer.
func (s *StreamWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			s.buf = append(s.buf, p...)
			for len(s.buf) >= MaxLineBytes {
				if err := s.f.record(s.stream, 'P', s.buf[:MaxLineBytes]); err != nil {
					return 0, err
				}
				s.buf = append(s.buf[:0], s.buf[MaxLineBytes:]...)
			}
			break
		}
		line := p[:i]
		if len(s.buf) > 0 {
			line = append(s.buf, line...)
		}
		for len(line) > MaxLineBytes {
			if err := s.f.record(s.stream, 'P', line[:MaxLineBytes]); err != nil {
				return 0, err
			}
			line = line[MaxLineBytes:]
		}
		if err := s.f.record(s.stream, 'F', line); err != nil {
			return 0, err
		}
		s.buf = s.buf[:0]
		p = p[i+1:]
	}
	return n, nil
}

// Close writes what is left of an unterminated last line as a full record.
func (s *StreamWriter) Close() error {
	if len(s.buf) == 0 {
		return nil
	}
	err := s.f.record(s.stream, 'F', s.buf)
	s.buf = nil
	return err
}
