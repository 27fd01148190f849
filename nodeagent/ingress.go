package nodeagent

import (
	"context"
	"net"
	"sync"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/logplane/logplane/dataplane/ingressproxy"
	"github.com/logplane/logplane/eventlog"
)

// IngressProxy is the Ingress controller the agent feeds from the log and serves on the node's
// ports (dataplane/ingressproxy's Proxy): IngressClasses, Ingresses, the Services and
// EndpointSlices of their backends, and the Secrets their TLS sections name. Each change is in
// effect when its method returns; open connections are never dropped.
type IngressProxy interface {
	UpdateIngressClass(c *networkingv1.IngressClass)
	DeleteIngressClass(name string)
	UpdateIngress(ing *networkingv1.Ingress)
	DeleteIngress(namespace, name string)
	UpdateService(svc *corev1.Service)
	DeleteService(namespace, name string)
	UpdateEndpointSlice(slice *discoveryv1.EndpointSlice) error
	DeleteEndpointSlice(namespace, name string)
	UpdateSecret(s *corev1.Secret)
	DeleteSecret(namespace, name string)
	Serve(ctx context.Context, l net.Listener) error
	ServeTLS(ctx context.Context, l net.Listener) error
}

// Ingress configures the agent's Ingress proxy.
type Ingress struct {
	// Proxy serves the Ingresses.
	Proxy IngressProxy
	// HTTP and HTTPS are the listeners it serves (the node's ports 80 and 443 by default);
	// either may be nil. The agent closes them when Run ends.
	HTTP, HTTPS net.Listener
}

var (
	ingressesGR      = schema.GroupResource{Group: networkingv1.GroupName, Resource: "ingresses"}
	ingressClassesGR = schema.GroupResource{Group: networkingv1.GroupName, Resource: "ingressclasses"}
	servicesGR       = schema.GroupResource{Resource: "services"}
	endpointSlicesGR = schema.GroupResource{Group: discoveryv1.GroupName, Resource: "endpointslices"}
	secretsGR        = schema.GroupResource{Resource: "secrets"}
)

// ingressFeed follows what the Ingress proxy needs in the projection and hands it over.
// Secrets go to the proxy only while an Ingress names them in its TLS section (the proxy
// keeps their parsed key pairs, nothing else).
type ingressFeed struct {
	a     *Agent
	proxy IngressProxy
	feed  *storeFeed

	mu sync.Mutex
	// tls are the Secrets each Ingress names, by Ingress.
	tls map[types.NamespacedName][]types.NamespacedName
}

func (f *ingressFeed) follows(k eventlog.Key) bool {
	gr := schema.GroupResource{Group: k.Group, Resource: k.Resource}
	return gr == ingressesGR || gr == ingressClassesGR || gr == servicesGR || gr == endpointSlicesGR || gr == secretsGR
}

// startIngress subscribes to what the feed follows, hands over every object the projection
// holds, then serves the listeners until ctx ends. done is closed when everything it started
// has stopped.
func (a *Agent) startIngress(ctx context.Context) (done <-chan struct{}) {
	cfg := a.cfg.Ingress
	f := &ingressFeed{a: a, proxy: cfg.Proxy, tls: map[types.NamespacedName][]types.NamespacedName{}}
	f.feed = newStoreFeed(a, "Ingress proxy", f)
	// Classes and Ingresses first, so that the Secrets they name are known when Secrets come.
	stop := f.feed.start([]schema.GroupResource{ingressClassesGR, ingressesGR, servicesGR, endpointSlicesGR, secretsGR})
	ch := make(chan struct{})
	var wg sync.WaitGroup
	serve := func(name string, l net.Listener, fn func(context.Context, net.Listener) error) {
		if l == nil {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.log.Info("nodeagent: serving Ingresses", "listener", name, "addr", l.Addr().String())
			if err := fn(ctx, l); err != nil && ctx.Err() == nil {
				a.log.Error("nodeagent: the Ingress proxy stopped serving", "listener", name, "err", err)
			}
		}()
	}
	serve("http", cfg.HTTP, f.proxy.Serve)
	serve("https", cfg.HTTPS, f.proxy.ServeTLS)
	go func() {
		defer close(ch)
		<-ctx.Done()
		stop()
		wg.Wait()
	}()
	return ch
}

// update hands the current state of the object at key to the proxy.
func (f *ingressFeed) update(key eventlog.Key, obj runtime.Object) {
	switch x := obj.(type) {
	case *networkingv1.IngressClass:
		f.proxy.UpdateIngressClass(x)
	case *networkingv1.Ingress:
		f.proxy.UpdateIngress(x)
		f.setTLS(types.NamespacedName{Namespace: x.Namespace, Name: x.Name}, x)
	case *corev1.Service:
		f.proxy.UpdateService(x)
	case *discoveryv1.EndpointSlice:
		if err := f.proxy.UpdateEndpointSlice(x); err != nil {
			// A slice without a service-name label: it is no Service's.
			f.a.log.Debug("nodeagent: endpointslice not given to the Ingress proxy", "key", key, "err", err)
		}
	case *corev1.Secret:
		if f.named(types.NamespacedName{Namespace: x.Namespace, Name: x.Name}) {
			f.proxy.UpdateSecret(x)
		} else {
			f.proxy.DeleteSecret(x.Namespace, x.Name)
		}
	}
}

func (f *ingressFeed) deleted(key eventlog.Key) {
	switch (schema.GroupResource{Group: key.Group, Resource: key.Resource}) {
	case ingressClassesGR:
		f.proxy.DeleteIngressClass(key.Name)
	case ingressesGR:
		f.proxy.DeleteIngress(key.Namespace, key.Name)
		f.setTLS(types.NamespacedName{Namespace: key.Namespace, Name: key.Name}, nil)
	case servicesGR:
		f.proxy.DeleteService(key.Namespace, key.Name)
	case endpointSlicesGR:
		f.proxy.DeleteEndpointSlice(key.Namespace, key.Name)
	case secretsGR:
		f.proxy.DeleteSecret(key.Namespace, key.Name)
	}
}

// setTLS records the Secrets ing names (nil: none, it is gone) and queues those it named
// before or names now, so that each is handed over or taken back.
func (f *ingressFeed) setTLS(nn types.NamespacedName, ing *networkingv1.Ingress) {
	var names []types.NamespacedName
	if ing != nil {
		for _, t := range ing.Spec.TLS {
			if t.SecretName != "" {
				names = append(names, types.NamespacedName{Namespace: ing.Namespace, Name: t.SecretName})
			}
		}
	}
	f.mu.Lock()
	old := f.tls[nn]
	if len(names) == 0 {
		delete(f.tls, nn)
	} else {
		f.tls[nn] = names
	}
	f.mu.Unlock()
	for _, s := range append(old, names...) {
		f.feed.queue.Add(eventlog.Key{Resource: secretsGR.Resource, Namespace: s.Namespace, Name: s.Name})
	}
}

// named says whether an Ingress names the Secret.
func (f *ingressFeed) named(s types.NamespacedName) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, names := range f.tls {
		for _, n := range names {
			if n == s {
				return true
			}
		}
	}
	return false
}

// IngressWarning records w, a Warning of the Ingress proxy (a TLS Secret missing or invalid,
// a rule left out), as a Warning Event on its Ingress: give it to the proxy's
// Config.OnWarning.
func (a *Agent) IngressWarning(w ingressproxy.Warning) {
	o, ok := a.store.Get(eventlog.Key{Group: ingressesGR.Group, Resource: ingressesGR.Resource, Namespace: w.Ingress.Namespace, Name: w.Ingress.Name})
	if !ok {
		return // gone meanwhile: nobody to tell
	}
	obj, err := o.Decode()
	if err != nil {
		a.log.Warn("nodeagent: undecodable Ingress for a Warning", "ingress", w.Ingress, "err", err)
		return
	}
	a.rec.Event(obj, o.Seq, corev1.EventTypeWarning, w.Reason, w.Message)
}
