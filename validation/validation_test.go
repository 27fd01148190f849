package validation_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"

	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/kinds/builtin"
	"github.com/logplane/logplane/printers"
	"github.com/logplane/logplane/validation"
)

var catalog = builtin.Catalog()

func kind(t *testing.T, group, k string) *kinds.Kind {
	t.Helper()
	for _, c := range catalog.All() {
		if c.Group == group && c.Kind == k {
			return c
		}
	}
	t.Fatalf("no kind %s/%s", group, k)
	return nil
}

// load decodes a manifest as kubectl sends it, in namespace default for namespaced kinds, and
// defaults it as the API server does before validating.
func load(t *testing.T, k *kinds.Kind, manifest string) runtime.Object {
	t.Helper()
	obj := k.New()
	j, err := yaml.YAMLToJSON([]byte(manifest))
	if err != nil {
		t.Fatalf("yaml: %v", err)
	}
	if err := json.Unmarshal(j, obj); err != nil {
		t.Fatalf("decode: %v", err)
	}
	m := obj.(interface {
		GetNamespace() string
		SetNamespace(string)
		SetUID(types.UID)
		GetUID() types.UID
	})
	if k.Namespaced && m.GetNamespace() == "" {
		m.SetNamespace("default")
	}
	if m.GetUID() == "" {
		m.SetUID("00000000-0000-4000-8000-000000000001")
	}
	apply(obj)
	return obj
}

func messages(errs field.ErrorList) []string {
	var out []string
	for _, e := range errs {
		out = append(out, e.Error())
	}
	return out
}

const emailTemplate = `
  selector: {matchLabels: {app: emailservice-demo}}
  template:
    metadata: {labels: {app: emailservice-demo}}
    spec:
      containers:
      - name: server
        image: gcr.io/google-samples/microservices-demo/emailservice:v0.7.0
`

// TestCreate checks what a user sees when creating objects, with the words Kubernetes uses.
func TestCreate(t *testing.T) {
	tests := []struct {
		name, group, kind, manifest string
		want                        []string
	}{
		{"seed pod is valid", "", "Pod", `
metadata: {name: emailservice-pod-test, labels: {project: online-boutique, env: prod, release: v0.7.0-stable}}
spec: {containers: [{name: server, image: "gcr.io/google-samples/microservices-demo/emailservice:v0.7.0"}]}`, nil},
		{"pod name and labels", "", "Pod", `
metadata: {name: Bad_Name, labels: {"a b": c, ok: "bad value!"}}
spec: {containers: [{name: c, image: busybox}]}`, []string{
			`metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`,
			`metadata.labels: Invalid value: "a b": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')`,
			`metadata.labels: Invalid value: "bad value!": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')`,
		}},
		{"pod without name", "", "Pod", `{spec: {containers: [{name: c, image: busybox}]}}`,
			[]string{"metadata.name: Required value: name or generateName is required"}},
		{"pod with ephemeral containers", "", "Pod", `{metadata: {name: p}, spec: {containers: [{name: c, image: busybox}], ephemeralContainers: [{name: debug, image: busybox}]}}`,
			[]string{"spec.ephemeralContainers: Forbidden: cannot be set on create"}},
		{"security contexts", "", "Pod", `
metadata: {name: p}
spec:
  securityContext: {runAsUser: -1, seccompProfile: {type: Localhost}, fsGroupChangePolicy: Sometimes}
  containers:
  - name: c
    image: busybox
    securityContext: {privileged: true, allowPrivilegeEscalation: false, seccompProfile: {type: RuntimeDefault, localhostProfile: x.json}}`, []string{
			`spec.securityContext.runAsUser: Invalid value: -1: must be between 0 and 2147483647, inclusive`,
			`spec.securityContext.fsGroupChangePolicy: Unsupported value: "Sometimes": supported values: "OnRootMismatch", "Always"`,
			`spec.securityContext.seccompProfile.localhostProfile: Required value: must be set when seccomp type is Localhost`,
			"spec.containers[0].securityContext: Invalid value: {\"privileged\":true,\"allowPrivilegeEscalation\":false,\"seccompProfile\":{\"type\":\"RuntimeDefault\",\"localhostProfile\":\"x.json\"}}: cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
			`spec.containers[0].securityContext.seccompProfile.localhostProfile: Invalid value: {"type":"RuntimeDefault","localhostProfile":"x.json"}: can only be set when seccomp type is Localhost`,
		}},
		{"pod without containers", "", "Pod", `{metadata: {name: p}, spec: {}}`,
			[]string{"spec.containers: Required value"}},
		{"containers: names, images, ports, resources", "", "Pod", `
metadata: {name: p}
spec:
  containers:
  - name: Server
    ports: [{containerPort: 70000}, {containerPort: 80, protocol: XTP}, {name: http, containerPort: 81}, {name: http, containerPort: 82}, {}]
    resources: {requests: {cpu: "2", memory: 1Gi}, limits: {cpu: "1"}}
  - name: Server
    image: " busybox"
  - image: busybox`, []string{
			`spec.containers[0].name: Invalid value: "Server": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')`,
			`spec.containers[0].image: Required value`,
			`spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive`,
			`spec.containers[0].ports[1].protocol: Unsupported value: "XTP": supported values: "SCTP", "TCP", "UDP"`,
			`spec.containers[0].ports[3].name: Duplicate value: "http"`,
			`spec.containers[0].ports[4].containerPort: Required value`,
			`spec.containers[0].resources.requests: Invalid value: "2": must be less than or equal to cpu limit of 1`,
			`spec.containers[1].name: Invalid value: "Server": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')`,
			`spec.containers[1].name: Duplicate value: "Server"`,
			`spec.containers[1].image: Invalid value: " busybox": must not have leading or trailing whitespace`,
			`spec.containers[2].name: Required value`,
		}},
		{"restart policy, env, probes", "", "Pod", `
metadata: {name: p}
spec:
  restartPolicy: Sometimes
  containers:
  - name: c
    image: busybox
    env: [{name: "A=B", value: x}, {value: "y"}, {name: C, value: z, valueFrom: {fieldRef: {fieldPath: metadata.name}}}, {name: D, valueFrom: {fieldRef: {fieldPath: spec.nope}}}]
    livenessProbe: {initialDelaySeconds: -1}
    readinessProbe: {httpGet: {port: 0}, successThreshold: 2}`, []string{
			`spec.containers[0].env[0].name: Invalid value: "A=B": a valid environment variable name must consist only of printable ASCII characters other than '='`,
			`spec.containers[0].env[1].name: Required value`,
			"spec.containers[0].env[2].valueFrom: Invalid value: \"\": may not be specified when `value` is not empty",
			`spec.containers[0].env[3].valueFrom.fieldRef.fieldPath: Unsupported value: "spec.nope": supported values: "metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName", "spec.serviceAccountName", "status.hostIP", "status.hostIPs", "status.podIP", "status.podIPs"`,
			`spec.containers[0].livenessProbe: Required value: must specify a handler type`,
			`spec.containers[0].livenessProbe.initialDelaySeconds: Invalid value: -1: must be greater than or equal to 0`,
			`spec.containers[0].readinessProbe.httpGet.port: Invalid value: 0: must be between 1 and 65535, inclusive`,
			`spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never"`,
		}},
		{"affinity, topology spread, DNS", "", "Pod", `
metadata: {name: p}
spec:
  dnsPolicy: None
  containers: [{name: c, image: busybox}]
  affinity:
    nodeAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
        nodeSelectorTerms: [{matchExpressions: [{key: disktype, operator: In}, {key: zone, operator: Near, values: [a]}]}]
      preferredDuringSchedulingIgnoredDuringExecution: [{weight: 0, preference: {matchExpressions: [{key: ssd, operator: Exists}]}}]
    podAntiAffinity:
      requiredDuringSchedulingIgnoredDuringExecution: [{labelSelector: {matchLabels: {app: web}}}]
  topologySpreadConstraints: [{maxSkew: 0, topologyKey: zone, whenUnsatisfiable: Maybe}]`, []string{
			"spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'",
			`spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[1].operator: Invalid value: "Near": not a valid selector operator`,
			`spec.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight: Invalid value: 0: must be in the range 1-100`,
			`spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey: Required value: can not be empty`,
			`spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey: Invalid value: "": name part must be non-empty`,
			`spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey: Invalid value: "": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')`,
			`spec.topologySpreadConstraints[0].maxSkew: Invalid value: 0: must be greater than zero`,
			`spec.topologySpreadConstraints[0].whenUnsatisfiable: Unsupported value: "Maybe": supported values: "DoNotSchedule", "ScheduleAnyway"`,
			"spec.dnsConfig: Required value: must provide `dnsConfig` when `dnsPolicy` is None",
		}},
		{"seed 003 deployment with a duplicate volume and a missing mount", "apps", "Deployment", `
metadata: {name: emailservice-deployment-demo, labels: {app: emailservice-demo}}
spec:
  replicas: 1
  selector: {matchLabels: {app: emailservice-demo}}
  template:
    metadata: {labels: {app: emailservice-demo, release: v0.7.0-stable}}
    spec:
      containers:
      - name: server
        image: gcr.io/google-samples/microservices-demo/emailservice:v0.7.0
        volumeMounts:
        - {name: email-templates-vol, mountPath: /email_server/templates}
        - {name: secret-volume, mountPath: /etc/secret-volume, readOnly: true}
      volumes:
      - {name: secret-volume, configMap: {name: email-templates}}
      - {name: secret-volume, secret: {secretName: emailservice-user-pass}}`, []string{
			`spec.template.spec.volumes[1].name: Duplicate value: "secret-volume"`,
			`spec.template.spec.containers[0].volumeMounts[0].name: Not found: "email-templates-vol"`,
		}},
		{"seed deployment is valid", "apps", "Deployment", "metadata: {name: emailservice-deployment-demo}\nspec:\n  replicas: 3" + emailTemplate, nil},
		{"deployment selector must match template", "apps", "Deployment", `
metadata: {name: d}
spec:
  replicas: -1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: api}}
    spec: {restartPolicy: Never, containers: [{name: c, image: busybox}]}`, []string{
			`spec.replicas: Invalid value: -1: must be greater than or equal to 0`,
			"spec.template.metadata.labels: Invalid value: {\"app\":\"api\"}: `selector` does not match template `labels`",
			`spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always"`,
		}},
		{"deployment without selector", "apps", "Deployment", `
metadata: {name: d}
spec: {template: {metadata: {labels: {app: web}}, spec: {containers: [{name: c, image: busybox}]}}}`,
			[]string{"spec.selector: Required value", "spec.template.metadata.labels: Invalid value: {\"app\":\"web\"}: `selector` does not match template `labels`"}},
		{"deployment strategy", "apps", "Deployment", "metadata: {name: d}\nspec:\n  strategy: {rollingUpdate: {maxSurge: 0, maxUnavailable: 0}}" + emailTemplate,
			[]string{"spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when `maxSurge` is 0"}},
		{"replicaset with empty selector", "apps", "ReplicaSet", `
metadata: {name: rs}
spec: {selector: {}, template: {metadata: {labels: {app: web}}, spec: {containers: [{name: c, image: busybox}]}}}`,
			[]string{"spec.selector: Invalid value: {}: empty selector is invalid for deployment"}},
		{"service", "", "Service", `
metadata: {name: my-emailservice}
spec: {selector: {app: emailservice-demo}, ports: [{protocol: TCP, port: 8080, targetPort: 8080}]}`, nil},
		{"service name must be a DNS-1035 label", "", "Service", `
metadata: {name: 1-service}
spec: {ports: [{port: 80}]}`, []string{
			`metadata.name: Invalid value: "1-service": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')`,
		}},
		{"service ports", "", "Service", `
metadata: {name: s}
spec: {type: ClusterIP, ports: [{port: 80, nodePort: 30080}, {port: 80, targetPort: "no_such"}, {port: 0, protocol: ICMP}]}`, []string{
			`spec.ports[0].name: Required value`,
			`spec.ports[1].name: Required value`,
			`spec.ports[1].targetPort: Invalid value: "no_such": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)`,
			`spec.ports[2].name: Required value`,
			`spec.ports[2].port: Invalid value: 0: must be between 1 and 65535, inclusive`,
			`spec.ports[2].protocol: Unsupported value: "ICMP": supported values: "SCTP", "TCP", "UDP"`,
			`spec.ports[2].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive`,
			"spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'",
			`spec.ports[1]: Duplicate value: {"port":80,"protocol":"TCP"}`,
		}},
		{"service without ports", "", "Service", `{metadata: {name: s}, spec: {selector: {app: x}}}`,
			[]string{"spec.ports: Required value"}},
		{"headless service without ports", "", "Service", `{metadata: {name: s}, spec: {clusterIP: None, selector: {app: x}}}`, nil},
		{"configmap keys", "", "ConfigMap", `{metadata: {name: email-templates}, data: {"confirmation.html": "<html/>", "bad/key": x}}`, []string{
			`data[bad/key]: Invalid value: "bad/key": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')`,
		}},
		{"secret of seed 003", "", "Secret", `{metadata: {name: emailservice-user-pass}, type: Opaque, data: {username: am9obg==, password: Mzk1MjgkdmRnN0pi}}`, nil},
		{"tls secret", "", "Secret", `{metadata: {name: t}, type: kubernetes.io/tls, data: {tls.crt: eA==}}`,
			[]string{"data[tls.key]: Required value"}},
		{"namespace name is a DNS label", "", "Namespace", `{metadata: {name: my.ns}}`, []string{
			`metadata.name: Invalid value: "my.ns": must not contain dots`,
		}},
		{"namespace may not be namespaced", "", "Namespace", `{metadata: {name: dev, namespace: default}}`,
			[]string{"metadata.namespace: Forbidden: not allowed on this type"}},
		{"replication controller of seed 001", "", "ReplicationController", `
metadata: {name: nginx-www}
spec:
  replicas: 3
  template:
    metadata: {labels: {app: nginx}}
    spec: {containers: [{name: nginx, image: "nginx:1.7.9", ports: [{containerPort: 80}]}]}`, nil},
		{"job needs a restart policy it supports", "batch", "Job", `
metadata: {name: pi}
spec: {template: {spec: {containers: [{name: pi, image: perl}]}}}`,
			[]string{`spec.template.spec.restartPolicy: Unsupported value: "Always": supported values: "OnFailure", "Never"`}},
		{"job name too long for its pods' label", "batch", "Job", `
metadata: {name: a-job-whose-name-is-far-too-long-to-be-the-value-of-a-label-on-its-pods}
spec: {template: {spec: {restartPolicy: Never, containers: [{name: pi, image: perl}]}}}`, []string{
			// The job's own labels are the template's (see defaults), so they fail too.
			`metadata.labels: Invalid value: "a-job-whose-name-is-far-too-long-to-be-the-value-of-a-label-on-its-pods": must be no more than 63 bytes`,
			`metadata.labels: Invalid value: "a-job-whose-name-is-far-too-long-to-be-the-value-of-a-label-on-its-pods": must be no more than 63 bytes`,
			`spec.template.labels: Invalid value: "a-job-whose-name-is-far-too-long-to-be-the-value-of-a-label-on-its-pods": must be no more than 63 bytes`,
			`spec.template.labels: Invalid value: "a-job-whose-name-is-far-too-long-to-be-the-value-of-a-label-on-its-pods": must be no more than 63 bytes`,
		}},
		{"job", "batch", "Job", `
metadata: {name: pi}
spec: {backoffLimit: 4, template: {spec: {restartPolicy: Never, containers: [{name: pi, image: perl}]}}}`, nil},
		{"cronjob schedule", "batch", "CronJob", `
metadata: {name: hello}
spec: {schedule: "every minute", jobTemplate: {spec: {template: {spec: {restartPolicy: OnFailure, containers: [{name: hello, image: busybox}]}}}}}`,
			[]string{`spec.schedule: Invalid value: "every minute": expected exactly 5 fields, found 2: [every minute]`}},
		{"cronjob of seed 001", "batch", "CronJob", `
metadata: {name: hello}
spec: {schedule: "*/1 * * * *", timeZone: Europe/Paris, jobTemplate: {spec: {template: {spec: {restartPolicy: OnFailure, containers: [{name: hello, image: busybox}]}}}}}`, nil},
		{"cronjob time zone", "batch", "CronJob", `
metadata: {name: hello}
spec: {schedule: "*/1 * * * *", timeZone: Mars/Olympus, jobTemplate: {spec: {template: {spec: {restartPolicy: OnFailure, containers: [{name: hello, image: busybox}]}}}}}`,
			[]string{`spec.timeZone: Invalid value: "Mars/Olympus": unknown time zone Mars/Olympus`}},
		{"statefulset name is a DNS label", "apps", "StatefulSet", "metadata: {name: web.1}\nspec:" + emailTemplate, []string{
			`metadata.name: Invalid value: "web.1": must not contain dots`,
		}},
		{"daemonset", "apps", "DaemonSet", "metadata: {name: agent}\nspec:" + emailTemplate, nil},
		{"daemonset with a deadline", "apps", "DaemonSet", "metadata: {name: agent}\nspec:" + strings.Replace(emailTemplate, "    spec:\n", "    spec:\n      activeDeadlineSeconds: 5\n", 1),
			[]string{"spec.template.spec.activeDeadlineSeconds: Forbidden: activeDeadlineSeconds in DaemonSet is not Supported"}},
		{"statefulset mounts its volume claim templates", "apps", "StatefulSet", `
metadata: {name: web}
spec:
  serviceName: nginx
  selector: {matchLabels: {app: nginx}}
  template:
    metadata: {labels: {app: nginx}}
    spec: {containers: [{name: nginx, image: nginx, volumeMounts: [{name: www, mountPath: /usr/share/nginx/html}, {name: nope, mountPath: /x}]}]}
  volumeClaimTemplates:
  - metadata: {name: www}
    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}`,
			[]string{`spec.template.spec.containers[0].volumeMounts[1].name: Not found: "nope"`}},
		{"deployment strategy type", "apps", "Deployment", "metadata: {name: d}\nspec:\n  strategy: {type: BlueGreen}" + emailTemplate,
			[]string{`spec.strategy: Unsupported value: {"type":"BlueGreen"}: supported values: "Recreate", "RollingUpdate"`}},
		{"daemonset without selector", "apps", "DaemonSet", `
metadata: {name: agent}
spec: {template: {metadata: {labels: {app: a}}, spec: {containers: [{name: c, image: busybox}]}}}`,
			[]string{"spec.template.metadata.labels: Invalid value: {\"app\":\"a\"}: `selector` does not match template `labels`"}},
		{"endpoints", "", "Endpoints", `
metadata: {name: my-emailservice}
subsets: [{addresses: [{ip: 10.244.0.48}], ports: [{port: 8080}]}, {ports: [{port: 70000}]}]`, []string{
			"subsets[1]: Required value: must specify `addresses` or `notReadyAddresses`",
			`subsets[1].ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive`,
		}},
		{"node", "", "Node", `{metadata: {name: k8s.minion1.dev}, spec: {taints: [{key: dedicated, value: gpu}]}}`,
			[]string{"spec.taints[0].effect: Required value"}},
		{"service account", "", "ServiceAccount", `{metadata: {name: default}}`, nil},
		{"lease", "coordination.k8s.io", "Lease", `{metadata: {name: node-1}, spec: {holderIdentity: node-1, leaseDurationSeconds: 0}}`,
			[]string{"spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"}},
		{"endpoint slice", "discovery.k8s.io", "EndpointSlice", `
metadata: {name: my-emailservice-abc}
addressType: IPv4
endpoints: [{addresses: ["10.244.0.48", "fe80::1"]}]
ports: [{port: 8080}]`, []string{`endpoints[0].addresses[1]: Invalid value: "fe80::1": must be an IPv4 address`}},
		{"core event", "", "Event", `
metadata: {name: nginx.17a8b0c7d2e3f4a5, namespace: default}
involvedObject: {kind: Pod, name: nginx, namespace: other}
reason: Scheduled
type: Normal`, []string{`involvedObject.namespace: Invalid value: "other": does not match event.namespace`}},
		{"events.k8s.io event", "events.k8s.io", "Event", `
metadata: {name: e1}
regarding: {kind: Pod, name: nginx, namespace: default}
reason: Scheduled
type: Normal
note: hi`, []string{
			"reportingController: Required value",
			`reportingController: Invalid value: "": name part must be non-empty`,
			`reportingController: Invalid value: "": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')`,
			"reportingInstance: Required value",
			"action: Required value",
			"eventTime: Required value",
		}},
		{"controller revision", "apps", "ControllerRevision", `{metadata: {name: web-7d8f}, revision: 1}`,
			[]string{"data: Required value: data is mandatory"}},
		{"network policy", "networking.k8s.io", "NetworkPolicy", `
metadata: {name: web}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress, Both]
  ingress:
  - from: [{}, {ipBlock: {cidr: 10.0.0.0/16, except: [10.0.0.0/8, 10.1.0.0/24]}, podSelector: {}}]
    ports: [{protocol: ICMP}, {port: http, endPort: 90}]
  egress:
  - to: [{ipBlock: {cidr: 300.0.0.0/8}}]
    ports: [{port: 8080, endPort: 80}, {endPort: 90}, {port: 70000}]`, []string{
			`spec.ingress[0].ports[0].protocol: Unsupported value: "ICMP": supported values: "TCP", "UDP", "SCTP"`,
			"spec.ingress[0].ports[1].endPort: Invalid value: 90: may not be specified when `port` is non-numeric",
			`spec.ingress[0].from[0]: Required value: must specify a peer`,
			"spec.ingress[0].from[1].ipBlock.except[0]: Invalid value: \"10.0.0.0/8\": must be a strict subset of `cidr`",
			"spec.ingress[0].from[1].ipBlock.except[1]: Invalid value: \"10.1.0.0/24\": must be a strict subset of `cidr`",
			`spec.ingress[0].from[1]: Forbidden: may not specify both ipBlock and another peer`,
			"spec.egress[0].ports[0].endPort: Invalid value: 80: must be greater than or equal to `port`",
			"spec.egress[0].ports[1].endPort: Invalid value: 90: may not be specified when `port` is not specified",
			`spec.egress[0].ports[2].port: Invalid value: 70000: must be between 1 and 65535, inclusive`,
			`spec.egress[0].to[0].ipBlock.cidr: Invalid value: "300.0.0.0/8": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)`,
			`spec.policyTypes[1]: Unsupported value: "Both": supported values: "Ingress", "Egress"`,
		}},
		{"network policy, valid", "networking.k8s.io", "NetworkPolicy", `
metadata: {name: web}
spec:
  podSelector: {}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {team: a}}, podSelector: {matchLabels: {role: c}}}, {ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}}]
    ports: [{port: http}, {port: 8000, endPort: 8080, protocol: UDP}]
  egress: [{}]`, nil},
		{"ingress paths and backends", "networking.k8s.io", "Ingress", `
metadata: {name: web}
spec:
  ingressClassName: Logplane
  rules:
  - host: 10.0.0.1
    http:
      paths:
      - {path: foo, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
      - {path: /a//b/., pathType: Exact, backend: {service: {name: Web, port: {number: 70000}}}}
      - {path: /x, backend: {service: {name: web, port: {number: 80}}}}
      - {path: /y, pathType: Regex, backend: {service: {name: web, port: {name: http, number: 80}}}}
      - {path: z, pathType: ImplementationSpecific, backend: {service: {name: web}}}
      - {path: /r, pathType: Prefix, backend: {resource: {kind: Bucket, name: b}, service: {name: web, port: {number: 80}}}}
      - {path: /n, pathType: Prefix, backend: {}}
  - host: "*.*.example.com"
    http: {paths: []}
  tls: [{hosts: ["a_b.example.com", "*.example.com"], secretName: Bad_Secret}]`, []string{
			`spec.rules[0].host: Invalid value: "10.0.0.1": must be a DNS name, not an IP address`,
			`spec.rules[0].http.paths[0].path: Invalid value: "foo": must be an absolute path`,
			`spec.rules[0].http.paths[1].path: Invalid value: "/a//b/.": must not contain '//'`,
			`spec.rules[0].http.paths[1].path: Invalid value: "/a//b/.": cannot end with '/.'`,
			`spec.rules[0].http.paths[1].backend.service.name: Invalid value: "Web": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')`,
			`spec.rules[0].http.paths[1].backend.service.port.number: Invalid value: 70000: must be between 1 and 65535, inclusive`,
			`spec.rules[0].http.paths[2].pathType: Required value: pathType must be specified`,
			`spec.rules[0].http.paths[3].pathType: Unsupported value: "Regex": supported values: "Exact", "ImplementationSpecific", "Prefix"`,
			`spec.rules[0].http.paths[3].backend: Invalid value: "": cannot set both port name & port number`,
			`spec.rules[0].http.paths[4].path: Invalid value: "z": must be an absolute path`,
			`spec.rules[0].http.paths[4].backend: Required value: port name or number is required`,
			`spec.rules[0].http.paths[5].backend: Invalid value: "": cannot set both resource and service backends`,
			`spec.rules[0].http.paths[6].backend: Invalid value: "": resource or service backend is required`,
			`spec.rules[1].host: Invalid value: "*.*.example.com": a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, which must consist of lower case alphanumeric characters, '-' or '.' and end with an alphanumeric character (e.g. '*.example.com', regex used for validation is '\*\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`,
			`spec.rules[1].http.paths: Required value`,
			`spec.tls[0].hosts[0]: Invalid value: "a_b.example.com": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`,
			`spec.tls[0].secretName: Invalid value: "Bad_Secret": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`,
			`spec.ingressClassName: Invalid value: "Logplane": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`,
		}},
		{"ingress without rules or default backend", "networking.k8s.io", "Ingress", `
metadata: {name: web, annotations: {kubernetes.io/ingress.class: nginx}}
spec: {ingressClassName: logplane}`, []string{
			"spec: Invalid value: null: either `defaultBackend` or `rules` must be specified",
			"annotations.kubernetes.io/ingress.class: Invalid value: \"nginx\": must match `ingressClassName` when both are specified",
		}},
		{"ingress, valid", "networking.k8s.io", "Ingress", `
metadata: {name: web}
spec:
  defaultBackend: {service: {name: web, port: {name: http}}}
  rules:
  - host: "*.example.com"
    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}]}
  - http: {paths: [{pathType: ImplementationSpecific, backend: {resource: {apiGroup: k8s.example.com, kind: StorageBucket, name: static}}}]}
  tls: [{hosts: ["*.example.com"], secretName: web-tls}]`, nil},
		{"ingress class", "networking.k8s.io", "IngressClass", `
metadata: {name: logplane}
spec:
  controller: logplane
  parameters: {kind: Params, name: p, scope: Cluster, namespace: default}`, []string{
			`spec.controller: Invalid value: "logplane": must be a domain-prefixed path (such as "acme.io/foo")`,
			"spec.parameters.namespace: Forbidden: `parameters.scope` is set to 'Cluster'",
		}},
		{"ingress class parameters", "networking.k8s.io", "IngressClass", `
metadata: {name: logplane}
spec:
  parameters: {apiGroup: k8s.example.com, kind: Params, name: p, scope: Namespace}`, []string{
			"spec.controller: Required value",
			"spec.parameters.namespace: Required value: `parameters.scope` is set to 'Namespace'",
		}},
		{"ingress class, valid", "networking.k8s.io", "IngressClass", `
metadata: {name: logplane, annotations: {ingressclass.kubernetes.io/is-default-class: "true"}}
spec: {controller: logplane.io/ingress, parameters: {kind: Params, name: p}}`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := kind(t, tt.group, tt.kind)
			obj := load(t, k, tt.manifest)
			// Errors come in Kubernetes' order, except that it walks maps (labels) in random order.
			got := messages(k.Validate(obj))
			if diff := cmp.Diff(tt.want, got, cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
		})
	}
}

// TestUpdate checks the rules that depend on the object being replaced.
func TestUpdate(t *testing.T) {
	pod := `
metadata: {name: nginx, resourceVersion: "5"}
spec: {containers: [{name: nginx, image: "nginx:1.7.9", ports: [{containerPort: 80}]}]}`
	tests := []struct {
		name, group, kind, old, new string
		want                        []string // messages, or prefixes of them ending in "..."
	}{
		{"pod image may change", "", "Pod", pod, strings.Replace(pod, "1.7.9", "1.8", 1), nil},
		{"pod port may not change", "", "Pod", pod, strings.Replace(pod, "80", "8080", 1), []string{
			"spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)\n...",
		}},
		{"pod containers may not be added", "", "Pod", pod, strings.Replace(pod, "containerPort: 80}]}]", "containerPort: 80}]}, {name: b, image: busybox}]", 1),
			[]string{"spec.containers: Forbidden: pod updates may not add or remove containers"}},
		{"pod labels may change", "", "Pod", pod, strings.Replace(pod, "name: nginx,", "name: nginx, labels: {app: web},", 1), nil},
		{"update needs a resourceVersion", "", "Pod", pod, strings.Replace(pod, `resourceVersion: "5"`, `labels: {a: b}`, 1),
			[]string{`metadata.resourceVersion: Invalid value: "": must be specified for an update`}},
		{"deployment selector is immutable", "apps", "Deployment",
			"metadata: {name: d, resourceVersion: \"1\"}\nspec:" + emailTemplate,
			"metadata: {name: d, resourceVersion: \"1\"}\nspec:" + strings.ReplaceAll(emailTemplate, "emailservice-demo", "other"),
			[]string{`spec.selector: Invalid value: {"matchLabels":{"app":"other"}}: field is immutable`}},
		{"ingress keeps an invalid Secret name it had", "networking.k8s.io", "Ingress",
			ingressWithSecret("Bad_Secret", ""), ingressWithSecret("Bad_Secret", "labels: {a: b}, "), nil},
		{"ingress may not take an invalid Secret name", "networking.k8s.io", "Ingress",
			ingressWithSecret("good", ""), ingressWithSecret("Bad_Secret", ""), []string{
				`spec.tls[0].secretName: Invalid value: "Bad_Secret": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`,
			}},
		{"ingress class controller is immutable", "networking.k8s.io", "IngressClass",
			"metadata: {name: c, resourceVersion: \"1\"}\nspec: {controller: a.io/x}",
			"metadata: {name: c, resourceVersion: \"1\"}\nspec: {controller: b.io/x}",
			[]string{`spec.controller: Invalid value: "b.io/x": field is immutable`}},
		{"deployment template may change", "apps", "Deployment",
			"metadata: {name: d, resourceVersion: \"1\"}\nspec:" + emailTemplate,
			"metadata: {name: d, resourceVersion: \"1\"}\nspec:" + strings.ReplaceAll(emailTemplate, "v0.7.0", "v0.8.0"), nil},
		{"service cluster IP is immutable", "", "Service",
			`{metadata: {name: s, resourceVersion: "1"}, spec: {clusterIP: 10.96.0.10, ports: [{port: 80}]}}`,
			`{metadata: {name: s, resourceVersion: "1"}, spec: {clusterIP: 10.96.0.11, ports: [{port: 80}]}}`,
			[]string{`spec.clusterIPs[0]: Invalid value: "10.96.0.11": may not change once set`}},
		{"immutable configmap", "", "ConfigMap",
			`{metadata: {name: c, resourceVersion: "1"}, immutable: true, data: {a: "1"}}`,
			`{metadata: {name: c, resourceVersion: "1"}, immutable: false, data: {a: "2"}}`, []string{
				"immutable: Forbidden: field is immutable when `immutable` is set",
				"data: Forbidden: field is immutable when `immutable` is set",
			}},
		{"mutable configmap", "", "ConfigMap",
			`{metadata: {name: c, resourceVersion: "1"}, data: {a: "1"}}`,
			`{metadata: {name: c, resourceVersion: "1"}, data: {a: "2"}}`, nil},
		{"secret type is immutable", "", "Secret",
			`{metadata: {name: s, resourceVersion: "1"}, data: {a: eA==}}`,
			`{metadata: {name: s, resourceVersion: "1"}, type: kubernetes.io/basic-auth, data: {username: eA==}}`,
			[]string{`type: Invalid value: "kubernetes.io/basic-auth": field is immutable`}},
		{"job template is immutable", "batch", "Job",
			`{metadata: {name: pi, resourceVersion: "1"}, spec: {template: {spec: {restartPolicy: Never, containers: [{name: pi, image: perl}]}}}}`,
			`{metadata: {name: pi, resourceVersion: "1"}, spec: {template: {spec: {restartPolicy: Never, containers: [{name: pi, image: perl2}]}}}}`,
			[]string{"spec.template: Invalid value: ...field is immutable"}},
		{"statefulset serviceName is immutable", "apps", "StatefulSet",
			"metadata: {name: web, resourceVersion: \"1\"}\nspec:\n  serviceName: a" + emailTemplate,
			"metadata: {name: web, resourceVersion: \"1\"}\nspec:\n  serviceName: b" + emailTemplate,
			[]string{"spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"}},
		{"name is immutable", "", "ConfigMap",
			`{metadata: {name: a, resourceVersion: "1"}}`, `{metadata: {name: b, resourceVersion: "1"}}`,
			[]string{`metadata.name: Invalid value: "b": field is immutable`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := kind(t, tt.group, tt.kind)
			old := load(t, k, tt.old)
			obj := load(t, k, tt.new)
			got := messages(k.ValidateUpdate(obj, old))
			if len(got) != len(tt.want) {
				t.Fatalf("errors %q, want %q", got, tt.want)
			}
			for i, w := range tt.want {
				if prefix, ok := strings.CutSuffix(w, "..."); ok {
					if !strings.HasPrefix(got[i], prefix) {
						t.Errorf("error %d:\n%s\nwant a message starting with\n%s", i, got[i], prefix)
					}
				} else if pre, suf, ok := strings.Cut(w, "..."); ok {
					if !strings.HasPrefix(got[i], pre) || !strings.HasSuffix(got[i], suf) {
						t.Errorf("error %d:\n%s\nwant %s", i, got[i], w)
					}
				} else if got[i] != w {
					t.Errorf("error %d:\n%s\nwant\n%s", i, got[i], w)
				}
			}
		})
	}
}

func TestConfigMapSizeLimit(t *testing.T) {
	k := kind(t, "", "ConfigMap")
	cm := load(t, k, `{metadata: {name: big}}`).(*corev1.ConfigMap)
	cm.Data = map[string]string{"a": strings.Repeat("x", validation.MaxDataSize/2), "b": strings.Repeat("y", validation.MaxDataSize/2)}
	if errs := k.Validate(cm); len(errs) != 0 {
		t.Fatalf("exactly 1 MiB refused: %v", errs)
	}
	cm.Data["c"] = "z"
	errs := k.Validate(cm)
	if len(errs) != 1 || errs[0].Type != field.ErrorTypeTooLong {
		t.Fatalf("1 MiB + 1 byte: errors %v, want one TooLong", errs)
	}
}

func TestUpdateStatus(t *testing.T) {
	k := kind(t, "", "Pod")
	old := load(t, k, `{metadata: {name: p, resourceVersion: "1"}, spec: {nodeName: n1, containers: [{name: c, image: busybox}]}, status: {phase: Succeeded}}`)
	obj := load(t, k, `{metadata: {name: p, resourceVersion: "1"}, spec: {nodeName: n1, containers: [{name: c, image: busybox}]}, status: {phase: Running, podIP: 10.0.0.300}}`)
	got := messages(k.ValidateStatusUpdate(obj, old))
	want := []string{
		`status.phase: Forbidden: cannot transition from terminal phase "Succeeded" to "Running"`,
		`status.podIPs[0].ip: Invalid value: "10.0.0.300": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
	dk := kind(t, "apps", "Deployment")
	dold := load(t, dk, "metadata: {name: d, resourceVersion: \"1\"}\nspec:"+emailTemplate+"status: {collisionCount: 2}\n")
	dnew := load(t, dk, "metadata: {name: d, resourceVersion: \"1\"}\nspec:"+emailTemplate+"status: {replicas: 1, readyReplicas: 1, availableReplicas: 2, collisionCount: 1}\n")
	got = messages(dk.ValidateStatusUpdate(dnew, dold))
	want = []string{
		"status.availableReplicas: Invalid value: 2: cannot be greater than status.replicas",
		"status.availableReplicas: Invalid value: 2: cannot be greater than readyReplicas",
		"status.collisionCount: Invalid value: 1: cannot be decremented",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("deployment status errors (-want +got):\n%s", diff)
	}
}

func TestScale(t *testing.T) {
	if errs := validation.Scale(-1); len(errs) != 1 || errs[0].Error() != "spec.replicas: Invalid value: -1: must be greater than or equal to 0" {
		t.Errorf("Scale(-1) = %v", errs)
	}
	if errs := validation.Scale(3); len(errs) != 0 {
		t.Errorf("Scale(3) = %v", errs)
	}
}

func TestNilObjects(t *testing.T) {
	k := kind(t, "", "Pod")
	var nilPod *corev1.Pod
	k.Default(nilPod)
	k.Default(nil)
	k.DefaultUpdate(nilPod, nilPod)
	if errs := k.Validate(nilPod); len(errs) != 1 || errs[0].Type != field.ErrorTypeInternal {
		t.Errorf("Create(nil pod) = %v, want an internal error", errs)
	}
	if errs := k.ValidateUpdate(nilPod, &corev1.Pod{}); len(errs) != 1 || errs[0].Type != field.ErrorTypeInternal {
		t.Errorf("Update(nil pod) = %v, want an internal error", errs)
	}
	if errs := k.ValidateStatusUpdate(&corev1.Pod{}, &corev1.Service{}); len(errs) != 1 || errs[0].Type != field.ErrorTypeInternal {
		t.Errorf("UpdateStatus(pod, service) = %v, want an internal error", errs)
	}
	if _, err := printers.Row(k, nilPod); err == nil {
		t.Error("Row(nil pod): want an error")
	}
}

// ingressWithSecret is an Ingress whose TLS section names secret, with meta inserted in its
// metadata.
func ingressWithSecret(secret, meta string) string {
	return "metadata: {" + meta + "name: web, resourceVersion: \"1\"}\n" +
		"spec: {defaultBackend: {service: {name: web, port: {number: 80}}}, tls: [{secretName: " + secret + "}]}"
}
