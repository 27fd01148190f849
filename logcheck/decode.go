package logcheck

import (
	"fmt"
	"runtime"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/kinds"
	eventv1 "github.com/logplane/logplane/proto/logplane/event/v1"
)

// objectDecoder decodes the objects events carry on every core, beside the replay.
type objectDecoder struct {
	catalog *kinds.Catalog
	work    chan []job
	batch   []job
	wg      sync.WaitGroup

	mu       sync.Mutex
	findings []Finding
	decoded  uint64
}

type job struct {
	seq uint64
	key eventlog.Key
	ev  *eventv1.ObjectChanged
}

const decodeBatch = 256

func newObjectDecoder(c *kinds.Catalog) *objectDecoder {
	d := &objectDecoder{catalog: c, work: make(chan []job, 64)}
	for range runtime.GOMAXPROCS(0) {
		d.wg.Go(d.run)
	}
	return d
}

func (d *objectDecoder) run() {
	for jobs := range d.work {
		var found []Finding
		var n uint64
		var last schema.GroupResource
		var k *kinds.Kind
		var known bool
		for _, j := range jobs {
			if len(j.ev.GetObject()) == 0 && j.ev.GetType() == eventv1.ChangeType_CHANGE_TYPE_DELETED {
				continue // a tombstone of an object that could not be read carries none
			}
			if j.ev.GetEncoding() == eventv1.Encoding_ENCODING_SEALED {
				// Encrypted (a Secret): the envelope is checked like any other, the object is
				// not opened (log check needs no keys), only its sealing is checked.
				if !sealedReadable(j.ev.GetObject()) {
					found = append(found, Finding{Problem: UndecodableObject, Seq: j.seq, Key: j.key, Detail: "its sealed object does not decode"})
					continue
				}
				n++
				continue
			}
			gr := schema.GroupResource{Group: j.key.Group, Resource: j.key.Resource}
			if k == nil || gr != last {
				k, known = d.catalog.ByGroupResource(gr)
				last = gr
			}
			if !known {
				continue
			}
			if _, err := k.Decode(j.ev.GetEncoding(), j.ev.GetObject()); err != nil {
				found = append(found, Finding{Problem: UndecodableObject, Seq: j.seq, Key: j.key, Detail: fmt.Sprintf("the %s it carries does not decode: %v", k.Kind, err)})
				continue
			}
			n++
		}
		d.mu.Lock()
		d.findings = append(d.findings, found...)
		d.decoded += n
		d.mu.Unlock()
	}
}

func (d *objectDecoder) check(_ *Report, seq uint64, key eventlog.Key, ev *eventv1.ObjectChanged) {
	d.batch = append(d.batch, job{seq: seq, key: key, ev: ev})
	if len(d.batch) == decodeBatch {
		d.work <- d.batch
		d.batch = make([]job, 0, decodeBatch)
	}
}

// wait finishes the work and adds what it found to rep.
func (d *objectDecoder) wait(rep *Report) {
	if len(d.batch) > 0 {
		d.work <- d.batch
		d.batch = nil
	}
	d.close()
	rep.Findings = append(rep.Findings, d.findings...)
	rep.Objects = d.decoded
}

func (d *objectDecoder) close() {
	if d.work != nil {
		close(d.work)
		d.work = nil
		d.wg.Wait()
	}
}

func timestamp(t time.Time) *timestamppb.Timestamp { return timestamppb.New(t) }

// sealedReadable says whether data is a SealedObject with what opening it needs.
func sealedReadable(data []byte) bool {
	var so eventv1.SealedObject
	return proto.Unmarshal(data, &so) == nil && so.GetKeyId() != "" && len(so.GetNonce()) > 0 && len(so.GetCiphertext()) > 0
}
