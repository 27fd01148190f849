// Package sets lists every reconciler logplane runs, each in the set whose replicas share its
// partitions: `logplane reconcile` and `logplane up` (cmd/logplane) and the test harness
// (reconcilers/reconcilerstest) build them from this one list. Each reconciler package has one
// Setup that registers it on an engine (engine.Setup); adding a reconciler is its package and
// one line in All.
package sets

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/logplane/logplane/reconcilers/addressrepair"
	"github.com/logplane/logplane/reconcilers/clusterroleaggregation"
	"github.com/logplane/logplane/reconcilers/cronjob"
	"github.com/logplane/logplane/reconcilers/daemonset"
	"github.com/logplane/logplane/reconcilers/deployment"
	"github.com/logplane/logplane/reconcilers/endpoints"
	"github.com/logplane/logplane/reconcilers/engine"
	"github.com/logplane/logplane/reconcilers/garbagecollector"
	"github.com/logplane/logplane/reconcilers/ingressstatus"
	"github.com/logplane/logplane/reconcilers/job"
	"github.com/logplane/logplane/reconcilers/namespaces"
	"github.com/logplane/logplane/reconcilers/nodefeed"
	"github.com/logplane/logplane/reconcilers/nodelifecycle"
	"github.com/logplane/logplane/reconcilers/replicaset"
	"github.com/logplane/logplane/reconcilers/rootcacert"
	"github.com/logplane/logplane/reconcilers/scheduler"
	"github.com/logplane/logplane/reconcilers/serviceaccounts"
	"github.com/logplane/logplane/reconcilers/servicelb"
	"github.com/logplane/logplane/reconcilers/statefulset"
	"github.com/logplane/logplane/reconcilers/volumebinding"
)

// The sets. The replicas of a set share its partitions (leases in a bucket of the set's own);
// the reconcilers of a set share one engine, and so one informer index.
const (
	// Scheduler binds pods to nodes, in the replica holding partition 0.
	Scheduler = "scheduler"
	// Workloads are kube-controller-manager's workload controllers: replica sets, deployments,
	// jobs, cron jobs, stateful sets, garbage collection, node and namespace lifecycle, Endpoints and
	// EndpointSlices, LoadBalancer Services' addresses; and the repair loop of Services' cluster
	// IPs and node ports (kube-apiserver runs it in Kubernetes).
	Workloads = "workloads"
	// ServiceAccounts are what every namespace gets for its service accounts (kube-controller-
	// manager configures them together): the default ServiceAccount and kube-root-ca.crt.
	ServiceAccounts = "serviceaccounts"
)

// Options are the settings of the reconcilers, from the process's flags. The zero value is
// every reconciler's defaults.
type Options struct {
	// NodeGracePeriod a node may go without renewing its lease before it is NotReady. Default 40s.
	NodeGracePeriod time.Duration
	// BurstReplicas bounds the pods one replica set reconcile creates or deletes. Default 500.
	BurstReplicas int
	// Workers per workload reconciler. Default 4.
	Workers int
	// RootCA reads the cluster CA certificate (PEM) that verifies the API server, which the root
	// CA publisher puts in every namespace; it may wait for it. Required for ServiceAccounts.
	RootCA func(ctx context.Context) ([]byte, error)
	// JobBackOff is the delay after a Job's first pod failure (doubled at each further one).
	// Default 10s, as Kubernetes.
	JobBackOff time.Duration
	// Only names the reconcilers (Reconciler.Name) to set up; empty: all of them.
	Only []string
	// Feeds keeps the nodes' feeds (the log): the nodefeed reconciler runs only when it is set.
	Feeds nodefeed.Feeds
}

// Reconciler is one line of the list: a reconciler package, named, in its set.
type Reconciler struct {
	Set   string
	Name  string
	Setup engine.Setup
}

// All lists the reconcilers, in the order their sets start.
func All(o Options) []Reconciler {
	return []Reconciler{
		{Scheduler, scheduler.Name, scheduler.Setup(scheduler.Config{})},
		{Workloads, replicaset.ReplicaSetName, replicaset.Setup(replicaset.Config{BurstReplicas: o.BurstReplicas, Workers: o.Workers})},
		{Workloads, deployment.Name, deployment.Setup(deployment.Config{Workers: o.Workers})},
		{Workloads, job.Name, job.Setup(job.Config{Workers: o.Workers, BackOff: o.JobBackOff})},
		{Workloads, cronjob.Name, cronjob.Setup(cronjob.Config{Workers: o.Workers})},
		{Workloads, daemonset.Name, daemonset.Setup(daemonset.Config{Workers: o.Workers})},
		{Workloads, garbagecollector.Name, garbagecollector.Setup(garbagecollector.Config{})},
		{Workloads, nodelifecycle.Name, nodelifecycle.Setup(nodelifecycle.Config{GracePeriod: o.NodeGracePeriod, Workers: o.Workers})},
		{Workloads, namespaces.Name, namespaces.Setup(namespaces.Config{})},
		{Workloads, clusterroleaggregation.Name, clusterroleaggregation.Setup(clusterroleaggregation.Config{})},
		{Workloads, addressrepair.ServicesName, addressrepair.Setup(addressrepair.Config{})},
		{Workloads, endpoints.Name, endpoints.Setup(endpoints.Config{Workers: o.Workers})},
		{Workloads, servicelb.Name, servicelb.Setup(servicelb.Config{})},
		{Workloads, ingressstatus.Name, ingressstatus.Setup(ingressstatus.Config{})},
		{Workloads, statefulset.Name, statefulset.Setup(statefulset.Config{Workers: o.Workers})},
		{Workloads, volumebinding.Name, volumebinding.Setup(volumebinding.Config{})},
		{ServiceAccounts, serviceaccounts.Name, serviceaccounts.Setup(serviceaccounts.Config{})},
		{ServiceAccounts, rootcacert.Name, rootcacert.Setup(rootcacert.Config{LoadCA: o.RootCA})},
		{Workloads, nodefeed.Name, nodefeed.Setup(nodefeed.Config{Feeds: o.Feeds})},
	}
}

// Names returns the names of the sets, in order.
func Names() []string {
	var out []string
	for _, r := range All(Options{}) {
		if !slices.Contains(out, r.Set) {
			out = append(out, r.Set)
		}
	}
	return out
}

// Setup sets up the reconcilers of set on e (those named in o.Only, if any).
func Setup(ctx context.Context, e *engine.Engine, set string, o Options) error {
	if !slices.Contains(Names(), set) {
		return fmt.Errorf("sets: unknown reconciler set %q (known: %v)", set, Names())
	}
	all := All(o)
	for _, n := range o.Only {
		if !slices.ContainsFunc(all, func(r Reconciler) bool { return r.Name == n }) {
			return fmt.Errorf("sets: unknown reconciler %q", n)
		}
	}
	for _, r := range all {
		if r.Set != set || (len(o.Only) > 0 && !slices.Contains(o.Only, r.Name)) {
			continue
		}
		if err := r.Setup(ctx, e); err != nil {
			return fmt.Errorf("reconciler %s: %w", r.Name, err)
		}
	}
	return nil
}
