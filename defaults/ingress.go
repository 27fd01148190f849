package defaults

import (
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/utils/ptr"
)

// IngressClass sets the parameters' scope to Cluster when they name none, as Kubernetes'
// SetDefaults_IngressClass. (An Ingress has no defaults: its class comes from admission.)
func IngressClass(c *networkingv1.IngressClass) {
	if c.Spec.Parameters != nil && c.Spec.Parameters.Scope == nil {
		c.Spec.Parameters.Scope = ptr.To(networkingv1.IngressClassParametersReferenceScopeCluster)
	}
}
