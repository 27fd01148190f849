package validation_test

import (
	"encoding/json"
	"testing"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/randfill"
	"sigs.k8s.io/yaml"

	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/printers"
)

// fuzzSeeds are manifests of the seed documents and a few odd ones, by kind.
var fuzzSeeds = []struct{ group, kind, manifest string }{
	{"", "Pod", `{metadata: {name: emailservice-pod-test, labels: {app: online-boutique}}, spec: {containers: [{name: server, image: "emailservice:v0.7.0", ports: [{containerPort: 8080}], livenessProbe: {httpGet: {port: 8080}}}]}}`},
	{"", "Pod", `{metadata: {name: p}, spec: {initContainers: [{name: i, restartPolicy: Always}], containers: [{}], volumes: [{name: v}, {name: v, secret: {}, configMap: {}}]}, status: {phase: Running, containerStatuses: [{state: {terminated: {}}}]}}`},
	{"apps", "Deployment", "metadata: {name: d}\nspec:" + emailTemplate},
	{"apps", "Deployment", `{metadata: {name: d}, spec: {strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: "x%", maxUnavailable: -1}}}}`},
	{"apps", "ReplicaSet", "metadata: {name: rs}\nspec:" + emailTemplate},
	{"apps", "DaemonSet", `{metadata: {name: ds}, spec: {updateStrategy: {type: Other}}}`},
	{"apps", "StatefulSet", `{metadata: {name: web}, spec: {selector: {matchExpressions: [{key: a, operator: Bogus}]}}}`},
	{"apps", "ControllerRevision", `{metadata: {name: c}, revision: -1}`},
	{"", "Service", `{metadata: {name: s}, spec: {type: LoadBalancer, clusterIP: None, ports: [{port: 10250, targetPort: x}]}}`},
	{"", "Service", `{metadata: {name: s}, spec: {clusterIPs: [None, 10.0.0.1], ipFamilies: [IPv9], ipFamilyPolicy: SingleStack}}`},
	{"", "ConfigMap", `{metadata: {name: c}, data: {a: b}, binaryData: {a: YQ==}}`},
	{"", "Secret", `{metadata: {name: s}, type: kubernetes.io/dockerconfigjson, stringData: {.dockerconfigjson: "{"}}`},
	{"", "Namespace", `{metadata: {name: dev}}`},
	{"", "Node", `{metadata: {name: n}, spec: {podCIDR: 10.0.0.0/24, taints: [{key: a, effect: NoSchedule}, {key: a, effect: NoSchedule}]}, status: {conditions: [{type: Ready, status: "True"}]}}`},
	{"", "Endpoints", `{metadata: {name: e}, subsets: [{addresses: [{ip: 1.2.3.4}], ports: [{port: 1}, {port: 2}]}]}`},
	{"", "Event", `{metadata: {name: e}, eventTime: "2026-01-01T00:00:00.000000Z", series: {count: 1}}`},
	{"events.k8s.io", "Event", `{metadata: {name: e}, type: Normal}`},
	{"", "ServiceAccount", `{metadata: {name: sa}, secrets: [{name: x}]}`},
	{"", "ReplicationController", `{metadata: {name: rc}, spec: {template: {metadata: {labels: {a: b}}}}}`},
	{"batch", "Job", `{metadata: {name: j, uid: u}, spec: {completionMode: Indexed, podFailurePolicy: {rules: [{action: Ignore, onPodConditions: [{type: X}]}]}}}`},
	{"batch", "CronJob", `{metadata: {name: c}, spec: {schedule: "CRON_TZ=UTC * * * * *", timeZone: "../etc"}}`},
	{"coordination.k8s.io", "Lease", `{metadata: {name: l}, spec: {leaseDurationSeconds: -5}}`},
	{"discovery.k8s.io", "EndpointSlice", `{metadata: {name: e}, addressType: FQDN, endpoints: [{addresses: [Bad_Host]}], ports: [{}, {}]}`},
}

// FuzzSemantics feeds arbitrary objects of every kind to defaults, validation and printers: none
// may panic, defaults are idempotent, and a printed row has a cell per column. The input is either
// JSON (mutated from the manifests above) or, when random is set, the entropy randfill builds a
// whole object from.
func FuzzSemantics(f *testing.F) {
	all := catalog.All()
	index := func(group, kind string) uint8 {
		for i, k := range all {
			if k.Group == group && k.Kind == kind {
				return uint8(i)
			}
		}
		f.Fatalf("no kind %s/%s", group, kind)
		return 0
	}
	for _, s := range fuzzSeeds {
		j, err := yaml.YAMLToJSON([]byte(s.manifest))
		if err != nil {
			f.Fatalf("%s: %v", s.kind, err)
		}
		f.Add(index(s.group, s.kind), j, false)
	}
	for i := range all {
		f.Add(uint8(i), []byte("logplane fuzz entropy for randfill, kind by kind"), true)
	}
	f.Fuzz(func(t *testing.T, which uint8, data []byte, random bool) {
		k := all[int(which)%len(all)]
		obj := k.New()
		if random {
			randfill.NewFromGoFuzz(data).NilChance(0.5).NumElements(0, 2).MaxDepth(9).Funcs(fillFuncs...).Fill(obj)
		} else if err := json.Unmarshal(data, obj); err != nil {
			return
		}
		exercise(t, k, obj)
	})
}

// fillFuncs fill what randfill cannot (interfaces) or would only fill with zeros (quantities).
var fillFuncs = []any{
	func(r *runtime.RawExtension, c randfill.Continue) {
		if c.Bool() {
			r.Raw = []byte(c.String(8))
		}
	},
	func(q *resource.Quantity, c randfill.Continue) {
		*q = *resource.NewMilliQuantity(c.Int63n(1<<20)-1<<10, resource.DecimalSI)
	},
	func(v *intstr.IntOrString, c randfill.Continue) {
		v.Type = intstr.Type(c.Intn(3))
		v.IntVal = c.Int31n(70000) - 10
		v.StrVal = c.String(6)
	},
}

func exercise(t *testing.T, k *kinds.Kind, obj runtime.Object) {
	old := obj.DeepCopyObject()
	apply(obj)
	again := obj.DeepCopyObject()
	apply(again)
	if !equality.Semantic.DeepEqual(obj, again) {
		t.Errorf("%s: defaults.Apply is not idempotent", k.Kind)
	}
	for _, errs := range [][]error{
		toErrors(k.Validate(obj)),
		toErrors(k.ValidateUpdate(obj, old)),
		toErrors(k.ValidateStatusUpdate(obj, old)),
		toErrors(k.ValidateUpdate(obj, obj.DeepCopyObject())),
	} {
		for _, e := range errs {
			_ = e.Error()
		}
	}
	updated := obj.DeepCopyObject()
	update(updated, old)
	row, err := printers.Row(k, obj)
	if err == nil && len(row.Cells) != len(printers.Columns(k)) {
		t.Errorf("%s: %d cells for %d columns", k.Kind, len(row.Cells), len(printers.Columns(k)))
	}
}

func toErrors[E error](list []E) []error {
	out := make([]error, len(list))
	for i, e := range list {
		out[i] = e
	}
	return out
}
