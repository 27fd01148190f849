package nodeagent

import (
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/util/workqueue"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/projections"
)

// feedConsumer is what a storeFeed hands the objects it follows to.
type feedConsumer interface {
	follows(k eventlog.Key) bool
	update(key eventlog.Key, obj runtime.Object) // the object's current state
	deleted(key eventlog.Key)                    // the store no longer has it
}

// storeFeed follows some objects of the agent's store and hands them to a consumer, one key at
// a time, through a work queue: a change of a followed object queues its key, and the worker
// hands over what the store holds at that key when it gets to it.
type storeFeed struct {
	a     *Agent
	what  string // the consumer, for the log
	to    feedConsumer
	queue workqueue.TypedInterface[eventlog.Key]
}

func newStoreFeed(a *Agent, what string, to feedConsumer) *storeFeed {
	return &storeFeed{a: a, what: what, to: to, queue: workqueue.NewTyped[eventlog.Key]()}
}

// start subscribes to the store, hands over every object of grs it holds (in that order), and
// starts the worker. stop stops the worker and ends the subscription.
func (f *storeFeed) start(grs []schema.GroupResource) (stop func()) {
	unsubscribe := f.a.store.Subscribe(func(ch projections.Change) {
		o := ch.New
		if o == nil {
			o = ch.Old
		}
		if f.to.follows(o.Key) {
			f.queue.Add(o.Key)
		}
	})
	for _, gr := range grs {
		objs, _ := f.a.store.List(projections.Query{Resource: gr})
		for _, o := range objs {
			f.sync(o.Key)
		}
	}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		for f.next() {
		}
	}()
	return func() {
		f.queue.ShutDown()
		<-stopped
		unsubscribe()
	}
}

func (f *storeFeed) next() bool {
	key, shutdown := f.queue.Get()
	if shutdown {
		return false
	}
	defer f.queue.Done(key)
	f.sync(key)
	return true
}

// sync hands the current state of the object at key to the consumer.
func (f *storeFeed) sync(key eventlog.Key) {
	o, ok := f.a.store.Get(key)
	if !ok {
		f.to.deleted(key)
		return
	}
	obj, err := o.Decode()
	if err != nil {
		f.a.log.Warn("nodeagent: undecodable object for the "+f.what, "key", key, "err", err)
		return
	}
	f.to.update(key, obj)
}
