// Package seeds holds the manifests of the seed walkthroughs (/work/shared/seeds) that more than
// one test suite replays: the reconcilers' tests on simulated nodes and e2e's on real containers.
// Each is the walkthrough's manifest with the image left to the caller, who picks one the nodes
// can run. Only tests import it.
package seeds

import "fmt"

// DeploymentDemo is the workloads tutorial's k8s/deployment-demo.yaml (seed 003): three
// replicas of emailservice-deployment-demo, labelled app=emailservice-demo.
func DeploymentDemo(image string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: emailservice-deployment-demo
  labels:
    app: emailservice-demo
spec:
  replicas: 3
  selector:
    matchLabels:
      app: emailservice-demo
  template:
    metadata:
      labels:
        app: emailservice-demo
    spec:
      containers:
      - name: server
        image: %s
`, image)
}

// ReplicaSetDemo is the workloads tutorial's k8s/replicaset-demo.yaml (seed 003) with the given
// replicas (3 in the tutorial).
func ReplicaSetDemo(image string, replicas int) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: emailservice-replicaset-demo
  labels:
    app: emailservice-demo
spec:
  replicas: %d
  selector:
    matchLabels:
      app: emailservice-demo
  template:
    metadata:
      labels:
        app: emailservice-demo
    spec:
      containers:
      - name: server
        image: %s
`, replicas, image)
}

// NginxMultiNode is the wiki's nginx-multi-node.yml (seed 001): the ReplicationController
// nginx-www, three pods labelled app=nginx, the container listening on port (80 in the wiki).
func NginxMultiNode(image string, port int) string {
	return fmt.Sprintf(`---
apiVersion: v1
kind: ReplicationController
metadata:
  name: nginx-www
spec:
  replicas: 3
  selector:
    app: nginx
  template:
    metadata:
      name: nginx
      labels:
        app: nginx
    spec:
      containers:
      - name: nginx
        image: %s
        ports:
        - containerPort: %d
`, image, port)
}
