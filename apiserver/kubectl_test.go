package apiserver_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/logplane/logplane/apiserver/apiservertest"
)

// kubectl runs the real kubectl against s, with stdin, and returns its output and error.
func kubectl(t *testing.T, s *apiservertest.Server, stdin string, args ...string) (string, error) {
	t.Helper()
	return s.Kubectl(t, stdin, args...)
}

// needKubectl skips a test when kubectl is not installed, unless CI requires every test to run.
func needKubectl(t *testing.T) { apiservertest.NeedKubectl(t) }

// must runs kubectl and fails the test if it fails or its output lacks any of want.
func must(t *testing.T, s *apiservertest.Server, stdin string, want []string, args ...string) string {
	t.Helper()
	out, err := kubectl(t, s, stdin, args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Fatalf("kubectl %s: output lacks %q:\n%s", strings.Join(args, " "), w, out)
		}
	}
	return out
}

// fails runs kubectl, expecting it to fail with output containing every one of want.
func fails(t *testing.T, s *apiservertest.Server, stdin string, want []string, args ...string) {
	t.Helper()
	out, err := kubectl(t, s, stdin, args...)
	if err == nil {
		t.Fatalf("kubectl %s succeeded, want an error:\n%s", strings.Join(args, " "), out)
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Fatalf("kubectl %s: output lacks %q:\n%s", strings.Join(args, " "), w, out)
		}
	}
}

const nginxPod = `apiVersion: v1
kind: Pod
metadata:
  name: nginx
  labels:
    app: nginx
spec:
  containers:
  - name: nginx
    image: nginx:1.7.9
    ports:
    - containerPort: 80
`

func TestKubectlApply(t *testing.T) {
	needKubectl(t)
	s := apiservertest.Start(t, apiservertest.Options{})
	must(t, s, "", []string{"Server Version: v1.34"}, "version")
	must(t, s, "", []string{"admin", "system:masters"}, "auth", "whoami")
	must(t, s, nginxPod, []string{"pod/nginx created"}, "apply", "-f", "-")
	must(t, s, nginxPod, []string{"pod/nginx unchanged"}, "apply", "-f", "-")
	must(t, s, strings.Replace(nginxPod, "1.7.9", "1.8", 1), []string{"pod/nginx configured"}, "apply", "-f", "-")
	must(t, s, "", []string{"image: nginx:1.8", "app: nginx"}, "get", "pod", "nginx", "-o", "yaml")
	fails(t, s, strings.Replace(nginxPod, "containers:", "bogus: 1\n  containers:", 1), []string{`unknown field "spec.bogus"`}, "apply", "-f", "-")
	must(t, s, "", []string{"image: nginx:1.8"}, "get", "pod", "nginx", "-o", "yaml")
	must(t, s, "", []string{`pod "nginx" deleted`}, "delete", "pod", "-l", "app=nginx")
	fails(t, s, "", []string{"NotFound", `"nginx" not found`}, "get", "pod", "nginx")
}

func TestKubectlSeedObjects(t *testing.T) {
	needKubectl(t)
	s := apiservertest.Start(t, apiservertest.Options{})
	seed, err := os.ReadFile("testdata/seed.yaml")
	if err != nil {
		t.Fatal(err)
	}
	must(t, s, string(seed), []string{
		"pod/nginx created", "replicaset.apps/emailservice-replicaset-demo created",
		"deployment.apps/emailservice-deployment-demo created", "service/my-emailservice created",
		"service/my-emailservice-external created", "secret/emailservice-user-pass created", "configmap/email-templates created",
	}, "apply", "-f", "-")
	must(t, s, string(seed), []string{"pod/nginx unchanged", "deployment.apps/emailservice-deployment-demo unchanged", "secret/emailservice-user-pass unchanged"}, "apply", "-f", "-")

	// Selectors, both kinds, on the URL.
	must(t, s, "", []string{"pod/nginx"}, "get", "pods", "-l", "app=nginx", "-o", "name")
	must(t, s, "", []string{"pod/nginx"}, "get", "pods", "-l", "app in (nginx, web)", "-o", "name")
	if out := must(t, s, "", nil, "get", "pods", "-l", "app notin (nginx)", "-o", "name"); strings.Contains(out, "nginx") {
		t.Fatalf("notin selector matched nginx: %s", out)
	}
	must(t, s, "", []string{"replicaset.apps/emailservice-replicaset-demo", "deployment.apps/emailservice-deployment-demo"},
		"get", "rs,deploy,svc", "-l", "app=emailservice-demo", "-o", "name")
	must(t, s, "", []string{"service/my-emailservice"}, "get", "svc", "-o", "name")

	// Output formats.
	must(t, s, "", []string{`"kind": "Pod"`, `"image": "nginx:1.7.9"`}, "get", "pod", "nginx", "-o", "json")
	must(t, s, "", []string{"nginx:1.7.9"}, "get", "pod", "nginx", "-o", "jsonpath={.spec.containers[0].image}")
	must(t, s, "", []string{"30002"}, "get", "svc", "my-emailservice-external", "-o", "jsonpath={.spec.ports[0].nodePort}")
	ip := must(t, s, "", nil, "get", "svc", "my-emailservice", "-o", "jsonpath={.spec.clusterIP}")
	if !strings.HasPrefix(ip, "10.96.") {
		t.Fatalf("cluster IP %q, want one in 10.96.0.0/16", ip)
	}
	must(t, s, "", []string{"am9obg=="}, "get", "secret", "emailservice-user-pass", "-o", "jsonpath={.data.username}")
	must(t, s, "", []string{"Your Order Confirmation"}, "get", "cm", "email-templates", "-o", "yaml")
	must(t, s, "", []string{"3"}, "get", "deploy", "emailservice-deployment-demo", "-o", "jsonpath={.spec.replicas}")

	// Describe.
	must(t, s, "", []string{"Name:", "nginx", "Labels:", "app=nginx", "nginx:1.7.9"}, "describe", "pod", "nginx")
	must(t, s, "", []string{"my-emailservice", "app=emailservice-demo", "8080/TCP"}, "describe", "svc", "my-emailservice")
	must(t, s, "", []string{"emailservice-deployment-demo", "emailservice:v0.7.0"}, "describe", "deployment", "emailservice-deployment-demo")

	// Label and annotate, with and without --overwrite.
	must(t, s, "", []string{"pod/nginx labeled"}, "label", "pod", "nginx", "tier=frontend")
	fails(t, s, "", []string{"already has a value (frontend)", "--overwrite is false"}, "label", "pod", "nginx", "tier=backend")
	must(t, s, "", []string{"pod/nginx labeled"}, "label", "pod", "nginx", "tier=backend", "--overwrite")
	must(t, s, "", []string{"backend"}, "get", "pod", "nginx", "-o", "jsonpath={.metadata.labels.tier}")
	must(t, s, "", []string{"pod/nginx annotated"}, "annotate", "pod", "nginx", "owner=alice")
	fails(t, s, "", []string{"--overwrite is false"}, "annotate", "pod", "nginx", "owner=bob")
	must(t, s, "", []string{"pod/nginx annotated"}, "annotate", "pod", "nginx", "owner=bob", "--overwrite")
	must(t, s, "", []string{"bob"}, "get", "pod", "nginx", "-o", "jsonpath={.metadata.annotations.owner}")
	must(t, s, "", []string{"pod/nginx unlabeled"}, "label", "pod", "nginx", "tier-")

	// Create from literals.
	must(t, s, "", []string{"configmap/lit created"}, "create", "configmap", "lit", "--from-literal=a=1", "--from-literal=b=2")
	must(t, s, "", []string{"2"}, "get", "cm", "lit", "-o", "jsonpath={.data.b}")
	must(t, s, "", []string{"secret/emailservice-cli created"}, "create", "secret", "generic", "emailservice-cli",
		"--from-literal=username=online-boutique-emailer", "--from-literal=password=39528$vdg7Jb")
	must(t, s, "", []string{"Mzk1MjgkdmRnN0pi"}, "get", "secret", "emailservice-cli", "-o", "jsonpath={.data.password}")
	fails(t, s, "", []string{`configmaps "lit" already exists`}, "create", "configmap", "lit", "--from-literal=a=1")

	// Scale through the scale subresource.
	must(t, s, "", []string{"deployment.apps/emailservice-deployment-demo scaled"}, "scale", "deployment", "emailservice-deployment-demo", "--replicas=5")
	must(t, s, "", []string{"5"}, "get", "deploy", "emailservice-deployment-demo", "-o", "jsonpath={.spec.replicas}")

	// Delete by name and by label.
	must(t, s, "", []string{`configmap "lit" deleted`}, "delete", "configmap", "lit")
	must(t, s, "", []string{`replicaset.apps "emailservice-replicaset-demo" deleted`, `deployment.apps "emailservice-deployment-demo" deleted`},
		"delete", "rs,deploy", "-l", "app=emailservice-demo")
	fails(t, s, "", []string{"NotFound"}, "get", "deploy", "emailservice-deployment-demo")
}

func TestKubectlReplaceEditConflict(t *testing.T) {
	needKubectl(t)
	s := apiservertest.Start(t, apiservertest.Options{})
	must(t, s, nginxPod, []string{"pod/nginx created"}, "create", "-f", "-")
	// replace: a whole new object.
	must(t, s, strings.Replace(nginxPod, "app: nginx", "app: nginx\n    replaced: \"yes\"", 1), []string{"pod/nginx replaced"}, "replace", "-f", "-")
	must(t, s, "", []string{"yes"}, "get", "pod", "nginx", "-o", "jsonpath={.metadata.labels.replaced}")
	// replace with a stale resourceVersion: conflict, nothing changed.
	rv := must(t, s, "", nil, "get", "pod", "nginx", "-o", "jsonpath={.metadata.resourceVersion}")
	must(t, s, "", []string{"pod/nginx labeled"}, "label", "pod", "nginx", "bump=1")
	stale := strings.Replace(nginxPod, "  name: nginx\n", "  name: nginx\n  resourceVersion: \""+rv+"\"\n", 1)
	fails(t, s, strings.Replace(stale, "app: nginx", "app: nginx\n    stale: \"yes\"", 1), []string{"Conflict", "the object has been modified"}, "replace", "-f", "-")
	if out := must(t, s, "", nil, "get", "pod", "nginx", "-o", "jsonpath={.metadata.labels}"); strings.Contains(out, "stale") {
		t.Fatalf("a conflicting replace changed the pod: %s", out)
	}
	// edit through KUBE_EDITOR: a script that rewrites the image.
	editor := t.TempDir() + "/editor.sh"
	if err := os.WriteFile(editor, []byte("#!/bin/sh\nsed -i 's/nginx:1.7.9/nginx:1.9.1/' \"$1\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KUBE_EDITOR", editor)
	must(t, s, "", []string{"pod/nginx edited"}, "edit", "pod", "nginx")
	must(t, s, "", []string{"nginx:1.9.1"}, "get", "pod", "nginx", "-o", "jsonpath={.spec.containers[0].image}")
	// Immutable fields are refused with a clear error.
	fails(t, s, strings.Replace(nginxPod, "containerPort: 80", "containerPort: 81", 1), []string{"is invalid", "pod updates may not change fields"}, "replace", "-f", "-")
}

func TestKubectlBadManifests(t *testing.T) {
	needKubectl(t)
	s := apiservertest.Start(t, apiservertest.Options{})
	for _, c := range []struct {
		name, manifest string
		want           []string
	}{
		{"not yaml", "apiVersion: v1\nkind: Pod\nmetadata: [name: x\n", []string{"error"}},
		{"unknown field", strings.Replace(nginxPod, "containers:", "bogus: 1\n  containers:", 1), []string{`unknown field "spec.bogus"`}},
		{"no containers", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: empty\nspec:\n  containers: []\n", []string{"is invalid", "spec.containers"}},
		{"bad name", strings.Replace(nginxPod, "name: nginx\n  labels", "name: Nginx_Bad\n  labels", 1), []string{"is invalid", "metadata.name"}},
		{"bad label", strings.Replace(nginxPod, "app: nginx", "app: \"bad value!\"", 1), []string{"is invalid", "metadata.labels"}},
		{"wrong kind", "apiVersion: v1\nkind: Pood\nmetadata:\n  name: x\n", []string{`no matches for kind "Pood"`}},
		{"missing namespace", strings.Replace(nginxPod, "name: nginx\n", "name: nginx\n  namespace: nowhere\n", 1), []string{"NotFound", `namespaces "nowhere" not found`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			fails(t, s, c.manifest, c.want, "apply", "-f", "-")
		})
	}
	if out := must(t, s, "", nil, "get", "pods", "-A", "-o", "name"); strings.TrimSpace(out) != "" {
		t.Fatalf("bad manifests left pods: %s", out)
	}
}

func TestKubectlServerSideApply(t *testing.T) {
	needKubectl(t)
	s := apiservertest.Start(t, apiservertest.Options{})
	cm := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\ndata:\n  a: \"1\"\n"
	must(t, s, cm, []string{"configmap/ssa serverside-applied"}, "apply", "--server-side", "-f", "-")
	must(t, s, cm, []string{"configmap/ssa serverside-applied"}, "apply", "--server-side", "-f", "-")
	// Another manager taking field a: a conflict, unless forced.
	other := strings.Replace(cm, `a: "1"`, `a: "2"`, 1)
	fails(t, s, other, []string{"conflict", "kubectl"}, "apply", "--server-side", "--field-manager=other", "-f", "-")
	must(t, s, "", []string{"1"}, "get", "cm", "ssa", "-o", "jsonpath={.data.a}")
	must(t, s, other, []string{"serverside-applied"}, "apply", "--server-side", "--field-manager=other", "--force-conflicts", "-f", "-")
	must(t, s, "", []string{"2"}, "get", "cm", "ssa", "-o", "jsonpath={.data.a}")
	must(t, s, "", []string{"manager: other", "operation: Apply"}, "get", "cm", "ssa", "-o", "yaml", "--show-managed-fields")
}

func TestKubectlWatch(t *testing.T) {
	needKubectl(t)
	s := apiservertest.Start(t, apiservertest.Options{})
	must(t, s, "", []string{"configmap/watched created"}, "create", "configmap", "watched", "--from-literal=v=1")
	t.Run("objects", func(t *testing.T) {
		kubectlWatch(t, s, []string{"1", "2"}, func() {
			must(t, s, "", []string{"configmap/watched patched"}, "patch", "cm", "watched", "-p", `{"data":{"v":"2"}}`)
		}, "get", "cm", "watched", "-w", "-o", "jsonpath={.data.v}{\"\\n\"}")
	})
	t.Run("table", func(t *testing.T) {
		// kubectl get -w prints the rows of Table watch events.
		kubectlWatch(t, s, []string{"NAME      DATA   AGE", "watched   1      ", "watched   2      "}, func() {
			must(t, s, "", []string{"configmap/watched patched"}, "patch", "cm", "watched", "-p", `{"data":{"w":"3"}}`)
		}, "get", "cm", "watched", "-w")
	})
}

// kubectlWatch runs a kubectl watch, waits for the first of want, calls change, and waits for
// the rest (each a prefix of a printed line, in order).
func kubectlWatch(t *testing.T, s *apiservertest.Server, want []string, change func(), args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	stdout, stop := apiservertest.Stream(t, s.KubectlCmd(ctx, t, args...))
	defer stop()
	lines := make(chan string, 16)
	go func() {
		buf := make([]byte, 4096)
		var acc string
		for {
			n, err := stdout.Read(buf)
			acc += string(buf[:n])
			for {
				i := strings.IndexByte(acc, '\n')
				if i < 0 {
					break
				}
				lines <- acc[:i]
				acc = acc[i+1:]
			}
			if err != nil {
				close(lines)
				return
			}
		}
	}()
	expect := func(want string) {
		t.Helper()
		select {
		case l, ok := <-lines:
			if !ok || !strings.HasPrefix(l, want) {
				t.Fatalf("kubectl %s printed %q (open %v), want %q", strings.Join(args, " "), l, ok, want)
			}
		case <-ctx.Done():
			t.Fatalf("kubectl %s: nothing printed, want %q", strings.Join(args, " "), want)
		}
	}
	for i, w := range want {
		if i == len(want)-1 {
			change()
		}
		expect(w)
	}
}

func TestKubectlTables(t *testing.T) {
	needKubectl(t)
	s := apiservertest.Start(t, apiservertest.Options{})
	seed, err := os.ReadFile("testdata/seed.yaml")
	if err != nil {
		t.Fatal(err)
	}
	must(t, s, string(seed), nil, "apply", "-f", "-")
	must(t, s, "", []string{"NAME", "READY", "STATUS", "NODE", "NOMINATED NODE", "nginx", "0/1", "Pending"}, "get", "pods", "-o", "wide")
	must(t, s, "", []string{"NAME", "STATUS", "default", "kube-system", "kube-public", "kube-node-lease", "Active"}, "get", "ns")
	must(t, s, "", []string{"pod/nginx", "service/my-emailservice-external", "NodePort", "8080:30002/TCP", "deployment.apps/emailservice-deployment-demo",
		"replicaset.apps/emailservice-replicaset-demo"}, "get", "all")
	must(t, s, "", []string{"emailservice-user-pass", "Opaque", "2"}, "get", "secret")
	out := must(t, s, "", []string{"nginx"}, "get", "pods", "--no-headers")
	if strings.Contains(out, "STATUS") {
		t.Fatalf("--no-headers printed headers: %s", out)
	}
	// kubectl explain reads the OpenAPI v3 schemas.
	must(t, s, "", []string{"KIND:", "Pod", "List of containers belonging to the pod", "image\t<string>"}, "explain", "pod.spec.containers")
	must(t, s, "", []string{"replicas\t<integer>", "Number of desired pods"}, "explain", "deployment.spec")
}
