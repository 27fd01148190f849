package rbac

import (
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/authentication/serviceaccount"
	"k8s.io/apiserver/pkg/authentication/user"
)

// The default policy: Kubernetes' plugin/pkg/auth/authorizer/rbac/bootstrappolicy (policy.go),
// for the resources logplane serves and the groups Kubernetes names, with one difference:
// Kubernetes leaves system:node unbound (its Node authorizer decides for nodes), and logplane,
// which has no Node authorizer yet, binds it to the group system:nodes.

var (
	read      = []string{"get", "list", "watch"}
	readWrite = []string{"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}
	write     = []string{"create", "update", "patch", "delete", "deletecollection"}
	readUpd   = []string{"get", "list", "watch", "update", "patch"}
)

const (
	legacyGroup  = ""
	appsGroup    = "apps"
	authnGroup   = "authentication.k8s.io"
	authzGroup   = "authorization.k8s.io"
	autoscaling  = "autoscaling"
	batchGroup   = "batch"
	certsGroup   = "certificates.k8s.io"
	coordGroup   = "coordination.k8s.io"
	discGroup    = "discovery.k8s.io"
	extensions   = "extensions"
	policyGroup  = "policy"
	rbacGroup    = rbacv1.GroupName
	storageGroup = "storage.k8s.io"
	netGroup     = "networking.k8s.io"
	eventsGroup  = "events.k8s.io"
)

// ruleBuilder is Kubernetes' rbacv1helpers.NewRule.
type ruleBuilder struct{ r rbacv1.PolicyRule }

func newRule(verbs ...string) *ruleBuilder { return &ruleBuilder{rbacv1.PolicyRule{Verbs: verbs}} }
func (b *ruleBuilder) groups(g ...string) *ruleBuilder {
	b.r.APIGroups = append(b.r.APIGroups, g...)
	return b
}
func (b *ruleBuilder) resources(r ...string) *ruleBuilder {
	b.r.Resources = append(b.r.Resources, r...)
	return b
}
func (b *ruleBuilder) names(n ...string) *ruleBuilder {
	b.r.ResourceNames = append(b.r.ResourceNames, n...)
	return b
}
func (b *ruleBuilder) urls(u ...string) *ruleBuilder {
	b.r.NonResourceURLs = append(b.r.NonResourceURLs, u...)
	return b
}
func (b *ruleBuilder) rule() rbacv1.PolicyRule { return b.r }

func eventsRule() rbacv1.PolicyRule {
	return newRule("create", "update", "patch").groups(legacyGroup, eventsGroup).resources("events").rule()
}

func viewRules() []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{
		newRule(read...).groups(legacyGroup).resources("pods", "replicationcontrollers", "replicationcontrollers/scale", "serviceaccounts",
			"services", "services/status", "endpoints", "persistentvolumeclaims", "persistentvolumeclaims/status", "configmaps").rule(),
		newRule(read...).groups(legacyGroup).resources("limitranges", "resourcequotas", "bindings", "events",
			"pods/status", "resourcequotas/status", "namespaces/status", "replicationcontrollers/status", "pods/log").rule(),
		newRule(read...).groups(legacyGroup).resources("namespaces").rule(),
		newRule(read...).groups(discGroup).resources("endpointslices").rule(),
		newRule(read...).groups(appsGroup).resources("controllerrevisions",
			"statefulsets", "statefulsets/status", "statefulsets/scale",
			"daemonsets", "daemonsets/status",
			"deployments", "deployments/status", "deployments/scale",
			"replicasets", "replicasets/status", "replicasets/scale").rule(),
		newRule(read...).groups(autoscaling).resources("horizontalpodautoscalers", "horizontalpodautoscalers/status").rule(),
		newRule(read...).groups(batchGroup).resources("jobs", "cronjobs", "cronjobs/status", "jobs/status").rule(),
		newRule(read...).groups(extensions).resources("daemonsets", "daemonsets/status", "deployments", "deployments/scale", "deployments/status",
			"ingresses", "ingresses/status", "replicasets", "replicasets/scale", "replicasets/status", "replicationcontrollers/scale",
			"networkpolicies").rule(),
		newRule(read...).groups(policyGroup).resources("poddisruptionbudgets", "poddisruptionbudgets/status").rule(),
		newRule(read...).groups(netGroup).resources("networkpolicies", "ingresses", "ingresses/status").rule(),
	}
}

func editRules() []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{
		newRule(read...).groups(legacyGroup).resources("pods/attach", "pods/proxy", "pods/exec", "pods/portforward", "secrets", "services/proxy").rule(),
		newRule("impersonate").groups(legacyGroup).resources("serviceaccounts").rule(),
		newRule(write...).groups(legacyGroup).resources("pods", "pods/attach", "pods/proxy", "pods/exec", "pods/portforward").rule(),
		newRule("create").groups(legacyGroup).resources("pods/eviction").rule(),
		newRule(write...).groups(legacyGroup).resources("replicationcontrollers", "replicationcontrollers/scale", "serviceaccounts",
			"services", "services/proxy", "persistentvolumeclaims", "configmaps", "secrets", "events").rule(),
		newRule("create").groups(legacyGroup).resources("serviceaccounts/token").rule(),
		newRule(write...).groups(appsGroup).resources("statefulsets", "statefulsets/scale", "daemonsets",
			"deployments", "deployments/scale", "deployments/rollback", "replicasets", "replicasets/scale").rule(),
		newRule(write...).groups(autoscaling).resources("horizontalpodautoscalers").rule(),
		newRule(write...).groups(batchGroup).resources("jobs", "cronjobs").rule(),
		newRule(write...).groups(extensions).resources("daemonsets", "deployments", "deployments/scale", "deployments/rollback", "ingresses",
			"replicasets", "replicasets/scale", "replicationcontrollers/scale", "networkpolicies").rule(),
		newRule(write...).groups(policyGroup).resources("poddisruptionbudgets").rule(),
		newRule(write...).groups(netGroup).resources("networkpolicies", "ingresses").rule(),
		newRule(readWrite...).groups(coordGroup).resources("leases").rule(),
	}
}

// NodeRules are the rights of system:node, Kubernetes' NodeRules.
func NodeRules() []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{
		newRule("create").groups(authnGroup).resources("tokenreviews").rule(),
		newRule("create").groups(authzGroup).resources("subjectaccessreviews", "localsubjectaccessreviews").rule(),
		newRule(read...).groups(legacyGroup).resources("services").rule(),
		newRule("create", "get", "list", "watch").groups(legacyGroup).resources("nodes").rule(),
		newRule("update", "patch").groups(legacyGroup).resources("nodes/status").rule(),
		newRule("update", "patch").groups(legacyGroup).resources("nodes").rule(),
		newRule("create", "update", "patch").groups(legacyGroup).resources("events").rule(),
		newRule(read...).groups(legacyGroup).resources("pods").rule(),
		newRule("create", "delete").groups(legacyGroup).resources("pods").rule(),
		newRule("update", "patch").groups(legacyGroup).resources("pods/status").rule(),
		newRule("create").groups(legacyGroup).resources("pods/eviction").rule(),
		newRule("get", "list", "watch").groups(legacyGroup).resources("secrets", "configmaps").rule(),
		newRule("get").groups(legacyGroup).resources("persistentvolumeclaims", "persistentvolumes").rule(),
		newRule("get").groups(legacyGroup).resources("endpoints").rule(),
		newRule("create", "get", "list", "watch").groups(certsGroup).resources("certificatesigningrequests").rule(),
		newRule("get", "create", "update", "patch", "delete").groups(coordGroup).resources("leases").rule(),
		newRule("get").groups(storageGroup).resources("volumeattachments").rule(),
		newRule("create").groups(legacyGroup).resources("serviceaccounts/token").rule(),
		newRule("get", "update", "patch").groups(legacyGroup).resources("persistentvolumeclaims/status").rule(),
		newRule("get", "watch", "list").groups(storageGroup).resources("csidrivers").rule(),
		newRule("get", "create", "update", "patch", "delete").groups(storageGroup).resources("csinodes").rule(),
		newRule("get", "list", "watch").groups("node.k8s.io").resources("runtimeclasses").rule(),
		newRule("get").groups(legacyGroup).resources("serviceaccounts").rule(),
	}
}

// ClusterRoles returns Kubernetes' default cluster roles (those of the resources logplane
// serves), labelled kubernetes.io/bootstrapping=rbac-defaults and annotated for auto-update as
// Kubernetes does. admin, edit and view aggregate the system:aggregate-to-* roles (see
// reconcilers/clusterroleaggregation).
func ClusterRoles() []*rbacv1.ClusterRole {
	agg := func(to string) *rbacv1.AggregationRule {
		return &rbacv1.AggregationRule{ClusterRoleSelectors: []metav1.LabelSelector{
			{MatchLabels: map[string]string{"rbac.authorization.k8s.io/aggregate-to-" + to: "true"}}}}
	}
	label := func(to string) map[string]string {
		return map[string]string{"rbac.authorization.k8s.io/aggregate-to-" + to: "true"}
	}
	roles := []*rbacv1.ClusterRole{
		{ObjectMeta: metav1.ObjectMeta{Name: "cluster-admin"}, Rules: []rbacv1.PolicyRule{
			newRule("*").groups("*").resources("*").rule(),
			newRule("*").urls("*").rule(),
		}},
		{ObjectMeta: metav1.ObjectMeta{Name: "system:discovery"}, Rules: []rbacv1.PolicyRule{
			newRule("get").urls("/livez", "/readyz", "/healthz", "/version", "/version/",
				"/openapi", "/openapi/*", "/api", "/api/*", "/apis", "/apis/*").rule(),
		}},
		{ObjectMeta: metav1.ObjectMeta{Name: "system:monitoring"}, Rules: []rbacv1.PolicyRule{
			newRule("get").urls("/metrics", "/metrics/slis", "/livez", "/readyz", "/healthz", "/livez/*", "/readyz/*", "/healthz/*").rule(),
			newRule("get").groups(legacyGroup).resources("nodes/metrics").rule(),
		}},
		{ObjectMeta: metav1.ObjectMeta{Name: "system:basic-user"}, Rules: []rbacv1.PolicyRule{
			newRule("create").groups(authzGroup).resources("selfsubjectaccessreviews", "selfsubjectrulesreviews").rule(),
			newRule("create").groups(authnGroup).resources("selfsubjectreviews").rule(),
		}},
		{ObjectMeta: metav1.ObjectMeta{Name: "system:public-info-viewer"}, Rules: []rbacv1.PolicyRule{
			newRule("get").urls("/livez", "/readyz", "/healthz", "/version", "/version/").rule(),
		}},
		{ObjectMeta: metav1.ObjectMeta{Name: "admin"}, AggregationRule: agg("admin")},
		{ObjectMeta: metav1.ObjectMeta{Name: "edit", Labels: label("admin")}, AggregationRule: agg("edit")},
		{ObjectMeta: metav1.ObjectMeta{Name: "view", Labels: label("edit")}, AggregationRule: agg("view")},
		{ObjectMeta: metav1.ObjectMeta{Name: "system:aggregate-to-admin", Labels: label("admin")}, Rules: []rbacv1.PolicyRule{
			newRule("create").groups(authzGroup).resources("localsubjectaccessreviews").rule(),
			newRule(readWrite...).groups(rbacGroup).resources("roles", "rolebindings").rule(),
		}},
		{ObjectMeta: metav1.ObjectMeta{Name: "system:aggregate-to-edit", Labels: label("edit")}, Rules: editRules()},
		{ObjectMeta: metav1.ObjectMeta{Name: "system:aggregate-to-view", Labels: label("view")}, Rules: viewRules()},
		{ObjectMeta: metav1.ObjectMeta{Name: "system:node"}, Rules: NodeRules()},
		{ObjectMeta: metav1.ObjectMeta{Name: "system:auth-delegator"}, Rules: []rbacv1.PolicyRule{
			newRule("create").groups(authnGroup).resources("tokenreviews").rule(),
			newRule("create").groups(authzGroup).resources("subjectaccessreviews").rule(),
		}},
		{ObjectMeta: metav1.ObjectMeta{Name: "system:kube-controller-manager"}, Rules: []rbacv1.PolicyRule{
			eventsRule(),
			newRule("create").groups(coordGroup).resources("leases").rule(),
			newRule("get", "update").groups(coordGroup).resources("leases").names("kube-controller-manager").rule(),
			newRule("create").groups(legacyGroup).resources("secrets", "serviceaccounts").rule(),
			newRule("delete").groups(legacyGroup).resources("secrets").rule(),
			newRule("get").groups(legacyGroup).resources("namespaces", "secrets", "serviceaccounts", "configmaps").rule(),
			newRule("update").groups(legacyGroup).resources("secrets", "serviceaccounts").rule(),
			newRule("create").groups(authnGroup).resources("tokenreviews").rule(),
			newRule("create").groups(authzGroup).resources("subjectaccessreviews").rule(),
			newRule("list", "watch").groups("*").resources("*").rule(),
			newRule("create").groups(legacyGroup).resources("serviceaccounts/token").rule(),
		}},
		{ObjectMeta: metav1.ObjectMeta{Name: "system:kube-dns"}, Rules: []rbacv1.PolicyRule{
			newRule("list", "watch").groups(legacyGroup).resources("endpoints", "services").rule(),
		}},
		{ObjectMeta: metav1.ObjectMeta{Name: "system:node-proxier"}, Rules: []rbacv1.PolicyRule{
			newRule("list", "watch").groups(legacyGroup).resources("services", "endpoints").rule(),
			newRule("get", "list", "watch").groups(legacyGroup).resources("nodes").rule(),
			eventsRule(),
			newRule("list", "watch").groups(netGroup).resources("servicecidrs").rule(),
			newRule("list", "watch").groups(discGroup).resources("endpointslices").rule(),
		}},
		{ObjectMeta: metav1.ObjectMeta{Name: "system:kube-scheduler"}, Rules: []rbacv1.PolicyRule{
			eventsRule(),
			newRule("create").groups(coordGroup).resources("leases").rule(),
			newRule("get", "update", "list", "watch").groups(coordGroup).resources("leases").names("kube-scheduler").rule(),
			newRule(readWrite...).groups(coordGroup).resources("leasecandidates").rule(),
			newRule(read...).groups(legacyGroup).resources("nodes").rule(),
			newRule("get", "list", "watch", "delete").groups(legacyGroup).resources("pods").rule(),
			newRule("create").groups(legacyGroup).resources("pods/binding", "bindings").rule(),
			newRule("patch", "update").groups(legacyGroup).resources("pods/status").rule(),
			newRule(read...).groups(legacyGroup).resources("services", "replicationcontrollers").rule(),
			newRule(read...).groups(appsGroup, extensions).resources("replicasets").rule(),
			newRule(read...).groups(appsGroup).resources("statefulsets").rule(),
			newRule(read...).groups(policyGroup).resources("poddisruptionbudgets").rule(),
			newRule(read...).groups(legacyGroup).resources("persistentvolumeclaims", "persistentvolumes").rule(),
			newRule("create").groups(authnGroup).resources("tokenreviews").rule(),
			newRule("create").groups(authzGroup).resources("subjectaccessreviews").rule(),
			newRule(read...).groups(storageGroup).resources("csinodes").rule(),
			newRule("get", "list", "watch").groups(storageGroup).resources("volumeattachments").rule(),
			newRule(read...).groups(legacyGroup).resources("namespaces").rule(),
			newRule(read...).groups(storageGroup).resources("csidrivers").rule(),
			newRule(read...).groups(storageGroup).resources("csistoragecapacities").rule(),
		}},
		{ObjectMeta: metav1.ObjectMeta{Name: "system:volume-scheduler"}, Rules: []rbacv1.PolicyRule{
			newRule(readUpd...).groups(legacyGroup).resources("persistentvolumes").rule(),
			newRule(read...).groups(storageGroup).resources("storageclasses").rule(),
			newRule(readUpd...).groups(legacyGroup).resources("persistentvolumeclaims").rule(),
		}},
		{ObjectMeta: metav1.ObjectMeta{Name: "system:service-account-issuer-discovery"}, Rules: []rbacv1.PolicyRule{
			newRule("get").urls("/.well-known/openid-configuration", "/.well-known/openid-configuration/", "/openid/v1/jwks", "/openid/v1/jwks/").rule(),
		}},
		// logplane's own: reading the log's status (GET /apis/logplane.io/v1alpha1/status).
		{ObjectMeta: metav1.ObjectMeta{Name: "logplane:log-status-viewer"}, Rules: []rbacv1.PolicyRule{
			newRule("get").urls("/apis/logplane.io/v1alpha1/status").rule(),
		}},
	}
	for _, r := range roles {
		defaultMetadata(&r.ObjectMeta)
	}
	return roles
}

// ClusterRoleBindings returns Kubernetes' default cluster role bindings, and system:node bound
// to the group system:nodes.
func ClusterRoleBindings() []*rbacv1.ClusterRoleBinding {
	group := func(n string) rbacv1.Subject {
		return rbacv1.Subject{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: n}
	}
	usr := func(n string) rbacv1.Subject {
		return rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: n}
	}
	bind := func(role string, subjects ...rbacv1.Subject) *rbacv1.ClusterRoleBinding {
		b := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: role},
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role}, Subjects: subjects}
		defaultMetadata(&b.ObjectMeta)
		return b
	}
	return []*rbacv1.ClusterRoleBinding{
		bind("cluster-admin", group(user.SystemPrivilegedGroup)),
		bind("system:monitoring", group(user.MonitoringGroup)),
		bind("system:discovery", group(user.AllAuthenticated)),
		bind("system:basic-user", group(user.AllAuthenticated)),
		bind("system:public-info-viewer", group(user.AllAuthenticated), group(user.AllUnauthenticated)),
		bind("system:node-proxier", usr(user.KubeProxy)),
		bind("system:kube-controller-manager", usr(user.KubeControllerManager)),
		bind("system:kube-dns", rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Namespace: "kube-system", Name: "kube-dns"}),
		bind("system:kube-scheduler", usr(user.KubeScheduler)),
		bind("system:volume-scheduler", usr(user.KubeScheduler)),
		bind("system:node", group(user.NodesGroup)),
		bind("system:service-account-issuer-discovery", group(serviceaccount.AllServiceAccountsGroup)),
	}
}

func defaultMetadata(m *metav1.ObjectMeta) {
	if m.Labels == nil {
		m.Labels = map[string]string{}
	}
	m.Labels["kubernetes.io/bootstrapping"] = "rbac-defaults"
	m.Annotations = map[string]string{rbacv1.AutoUpdateAnnotationKey: "true"}
}
