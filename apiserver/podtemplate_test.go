package apiserver_test

import (
	"testing"

	"github.com/logplane/logplane/apiserver/apiservertest"
)

// TestPodTemplates: PodTemplates, the kind added as kinds/builtin/podtemplate.go alone, are
// served as Kubernetes serves them: created and read back defaulted, listed with Kubernetes'
// columns, refused with its validation errors, deleted.
func TestPodTemplates(t *testing.T) {
	needKubectl(t)
	s := apiservertest.Start(t, apiservertest.Options{})
	const tmpl = `apiVersion: v1
kind: PodTemplate
metadata:
  name: web
template:
  metadata:
    labels: {app: web, tier: front}
  spec:
    containers:
    - name: nginx
      image: nginx
    - name: sidecar
      image: busybox:1.36
`
	must(t, s, tmpl, []string{"podtemplate/web created"}, "apply", "-f", "-")
	must(t, s, "", []string{"imagePullPolicy: Always", "imagePullPolicy: IfNotPresent", "restartPolicy: Always", "terminationGracePeriodSeconds: 30"},
		"get", "podtemplate", "web", "-o", "yaml")
	must(t, s, "", []string{"NAME   CONTAINERS      IMAGES               POD LABELS", "web    nginx,sidecar   nginx,busybox:1.36   app=web,tier=front"},
		"get", "podtemplates")
	fails(t, s, `apiVersion: v1
kind: PodTemplate
metadata: {name: bad}
template:
  spec:
    containers: [{name: Bad_Name, image: nginx}]
`, []string{`The PodTemplate "bad" is invalid`, "template.spec.containers[0].name: Invalid value: \"Bad_Name\""}, "create", "-f", "-")
	must(t, s, "", []string{`podtemplate "web" deleted`}, "delete", "podtemplate", "web")
}
