// Package printers renders objects as the rows of a metav1.Table with the columns Kubernetes
// prints for each kind (`kubectl get` asks the server for Tables): NAME, READY, STATUS, RESTARTS,
// AGE for pods, with the -o wide columns at priority 1, and so on for every kind logplane serves.
// The cells are computed as Kubernetes' pkg/printers/internalversion computes them (a pod's
// STATUS from its containers' states, ages with apimachinery's HumanDuration, ...). It is pure:
// no log, no network; the clock is injectable.
package printers

import (
	"fmt"
	"reflect"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/duration"

	"github.com/logplane/logplane/kinds"
)

// Printer computes Table rows against a clock.
type Printer struct {
	// Now tells the time ages are computed from; nil means time.Now.
	Now func() time.Time
}

// Row returns obj's cells, one per column of Columns(k), in order, computed with the real clock.
// Row does not set the row's Object; the caller embeds what the client asked for (partial or full
// metadata). The server always sends the -o wide columns; kubectl hides those of priority 1.
func Row(k *kinds.Kind, obj runtime.Object) (metav1.TableRow, error) {
	return Printer{}.Row(k, obj)
}

// Table renders objs, all of kind k, as a Table without row objects.
func Table(k *kinds.Kind, objs []runtime.Object) (*metav1.Table, error) {
	return Printer{}.Table(k, objs)
}

// Columns returns the column definitions of kind k's Table.
func Columns(k *kinds.Kind) []metav1.TableColumnDefinition {
	return printerFor(k).Columns
}

// Row is the package's Row with p's clock.
func (p Printer) Row(k *kinds.Kind, obj runtime.Object) (metav1.TableRow, error) {
	pr := printerFor(k)
	if v := reflect.ValueOf(obj); !v.IsValid() || (v.Kind() == reflect.Pointer && v.IsNil()) {
		return metav1.TableRow{}, fmt.Errorf("printers: nil %s", k.Kind)
	}
	cells, conds, err := pr.Row(p.now(), obj)
	if err != nil {
		return metav1.TableRow{}, fmt.Errorf("printers: %s: %w", k.Kind, err)
	}
	if len(cells) != len(pr.Columns) {
		return metav1.TableRow{}, fmt.Errorf("printers: %s: %d cells for %d columns", k.Kind, len(cells), len(pr.Columns))
	}
	return metav1.TableRow{Cells: cells, Conditions: conds}, nil
}

// Table is the package's Table with p's clock.
func (p Printer) Table(k *kinds.Kind, objs []runtime.Object) (*metav1.Table, error) {
	t := &metav1.Table{ColumnDefinitions: Columns(k), Rows: make([]metav1.TableRow, 0, len(objs))}
	t.SetGroupVersionKind(metav1.SchemeGroupVersion.WithKind("Table"))
	for _, obj := range objs {
		row, err := p.Row(k, obj)
		if err != nil {
			return nil, err
		}
		t.Rows = append(t.Rows, row)
	}
	return t, nil
}

func (p Printer) now() func() time.Time {
	if p.Now == nil {
		return time.Now
	}
	return p.Now
}

// clock computes the durations the cells show.
type clock func() time.Time

// since is Kubernetes' translateTimestampSince: "<unknown>" for a zero time.
func (c clock) since(t metav1.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(c().Sub(t.Time))
}

func (c clock) sinceMicro(t metav1.MicroTime) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(c().Sub(t.Time))
}

type rowFunc func(c clock, obj runtime.Object) ([]any, []metav1.TableRowCondition, error)

// typed adapts a row function of one type.
func typed[T runtime.Object](f func(c clock, obj T) ([]any, []metav1.TableRowCondition, error)) rowFunc {
	return func(c clock, obj runtime.Object) ([]any, []metav1.TableRowCondition, error) {
		o, ok := obj.(T)
		if !ok {
			var want T
			return nil, nil, fmt.Errorf("got a %T, want a %T", obj, want)
		}
		return f(c, o)
	}
}

// cells wraps a row function that sets no row conditions.
func cells[T runtime.Object](f func(c clock, obj T) []any) rowFunc {
	return typed(func(c clock, obj T) ([]any, []metav1.TableRowCondition, error) { return f(c, obj), nil, nil })
}

var (
	nameColumn = metav1.TableColumnDefinition{Name: "Name", Type: "string", Format: "name", Description: metav1.ObjectMeta{}.SwaggerDoc()["name"]}
	ageColumn  = metav1.TableColumnDefinition{Name: "Age", Type: "string", Description: metav1.ObjectMeta{}.SwaggerDoc()["creationTimestamp"]}
)

// The Tables of the built-in kinds, which their strategies (kinds/builtin) wire in.
var (
	PodTable                   = table(podColumns, typed(podRow))
	ServiceTable               = table(serviceColumns, cells(serviceRow))
	EndpointsTable             = table(endpointsColumns, cells(endpointsRow))
	ConfigMapTable             = table(configMapColumns, cells(configMapRow))
	SecretTable                = table(secretColumns, cells(secretRow))
	EventTable                 = table(eventColumns, cells(eventRow))
	EventsV1Table              = table(eventColumns, cells(eventsV1Row))
	NamespaceTable             = table(namespaceColumns, cells(namespaceRow))
	NodeTable                  = table(nodeColumns, cells(nodeRow))
	ServiceAccountTable        = table(serviceAccountColumns, cells(serviceAccountRow))
	ReplicationControllerTable = table(rcColumns, cells(rcRow))
	DeploymentTable            = table(deploymentColumns, typed(deploymentRow))
	ReplicaSetTable            = table(replicaSetColumns, cells(replicaSetRow))
	DaemonSetTable             = table(daemonSetColumns, cells(daemonSetRow))
	StatefulSetTable           = table(statefulSetColumns, cells(statefulSetRow))
	ControllerRevisionTable    = table(controllerRevisionColumns, cells(controllerRevisionRow))
	JobTable                   = table(jobColumns, cells(jobRow))
	CronJobTable               = table(cronJobColumns, cells(cronJobRow))
	LeaseTable                 = table(leaseColumns, cells(leaseRow))
	EndpointSliceTable         = table(endpointSliceColumns, cells(endpointSliceRow))
)

// table makes a kind's Table from its columns and row function.
func table(columns []metav1.TableColumnDefinition, row rowFunc) *kinds.Table {
	return &kinds.Table{Columns: columns, Row: func(now func() time.Time, obj runtime.Object) ([]any, []metav1.TableRowCondition, error) {
		return row(clock(now), obj)
	}}
}

// defaultTable is Kubernetes' default table: name and age.
var defaultTable = table(
	[]metav1.TableColumnDefinition{nameColumn, {Name: "Created At", Type: "date", Description: metav1.ObjectMeta{}.SwaggerDoc()["creationTimestamp"]}},
	func(c clock, obj runtime.Object) ([]any, []metav1.TableRowCondition, error) {
		m, err := meta.Accessor(obj)
		if err != nil {
			return nil, nil, err
		}
		return []any{m.GetName(), m.GetCreationTimestamp().UTC().Format(time.RFC3339)}, nil, nil
	})

func printerFor(k *kinds.Kind) *kinds.Table {
	if t := k.Strategy.Table; t != nil {
		return t
	}
	return defaultTable
}
