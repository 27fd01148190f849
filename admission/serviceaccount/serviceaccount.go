// Package serviceaccount is Kubernetes' ServiceAccount admission plug-in
// (plugin/pkg/admission/serviceaccount) over logplane's projection: a new pod gets the
// "default" service account if it names none, must name one that exists (403 otherwise, as
// Kubernetes), takes the account's image pull secrets if it has none, and, unless
// automountServiceAccountToken says no (the pod's, else the account's), gets the projected
// volume kube-api-access-<random> (a bound token of 3607 seconds, the kube-root-ca.crt
// ConfigMap's ca.crt, the namespace from the downward API) mounted read-only at
// /var/run/secrets/kubernetes.io/serviceaccount in every container that mounts nothing there.
// The registry runs it for every writer (package registry's Config.Admission).
package serviceaccount

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/storage/names"
	"k8s.io/utils/clock"

	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/projections"
)

// What Kubernetes names.
const (
	// PluginName is the plug-in's name in kube-apiserver's --enable-admission-plugins.
	PluginName = "ServiceAccount"
	// DefaultServiceAccountName is the account of pods that name none.
	DefaultServiceAccountName = "default"
	// EnforceMountableSecretsAnnotation on an account limits its pods to the secrets it lists.
	EnforceMountableSecretsAnnotation = "kubernetes.io/enforce-mountable-secrets"
	// ServiceAccountVolumeName prefixes the token volume's name.
	ServiceAccountVolumeName = "kube-api-access"
	// DefaultAPITokenMountPath is where the volume is mounted.
	DefaultAPITokenMountPath = "/var/run/secrets/kubernetes.io/serviceaccount"
	// TokenExpirationSeconds is the expiry the volume asks for (pkg/serviceaccount's
	// WarnOnlyBoundTokenExpirationSeconds).
	TokenExpirationSeconds = 60*60 + 7
	// RootCAConfigMap and its key are what the root CA publisher writes in every namespace.
	RootCAConfigMap = "kube-root-ca.crt"
	RootCAKey       = "ca.crt"
)

// store is what the plug-in reads.
type store interface {
	Get(key eventlog.Key) (*projections.Object, bool)
}

var _ store = (*projections.Store)(nil)

// Plugin is the ServiceAccount admission plug-in.
type Plugin struct {
	*admission.Handler
	store store
	clock clock.Clock
	// generateName makes the volume's name (names.SimpleNameGenerator, as Kubernetes).
	generateName func(string) string
}

var (
	_ admission.MutationInterface   = (*Plugin)(nil)
	_ admission.ValidationInterface = (*Plugin)(nil)
)

// New returns the plug-in reading accounts from s; clk times the retries of a missing default
// account (nil: the real clock).
func New(s store, clk clock.Clock) *Plugin {
	if clk == nil {
		clk = clock.RealClock{}
	}
	return &Plugin{Handler: admission.NewHandler(admission.Create), store: s, clock: clk, generateName: names.SimpleNameGenerator.GenerateName}
}

// Admit sets a new pod's account, its image pull secrets and its token volume.
func (p *Plugin) Admit(ctx context.Context, a admission.Attributes, o admission.ObjectInterfaces) error {
	pod, ok := podOf(a)
	if !ok {
		return nil
	}
	if pod.Spec.ServiceAccountName == "" {
		pod.Spec.ServiceAccountName = DefaultServiceAccountName
	}
	sa, err := p.serviceAccount(ctx, a.GetNamespace(), pod.Spec.ServiceAccountName)
	if err != nil {
		return admission.NewForbidden(a, fmt.Errorf("error looking up service account %s/%s: %w", a.GetNamespace(), pod.Spec.ServiceAccountName, err))
	}
	if shouldAutomount(sa, pod) {
		p.mountServiceAccountToken(pod)
	}
	if len(pod.Spec.ImagePullSecrets) == 0 && len(sa.ImagePullSecrets) > 0 {
		pod.Spec.ImagePullSecrets = make([]corev1.LocalObjectReference, len(sa.ImagePullSecrets))
		for i, s := range sa.ImagePullSecrets {
			pod.Spec.ImagePullSecrets[i].Name = s.Name
		}
	}
	return p.Validate(ctx, a, o)
}

// Validate checks that a new pod's account exists and, if the account says so, that the pod
// uses only the secrets it lists.
func (p *Plugin) Validate(ctx context.Context, a admission.Attributes, _ admission.ObjectInterfaces) error {
	pod, ok := podOf(a)
	if !ok {
		return nil
	}
	sa, err := p.serviceAccount(ctx, a.GetNamespace(), pod.Spec.ServiceAccountName)
	if err != nil {
		return admission.NewForbidden(a, fmt.Errorf("error looking up service account %s/%s: %w", a.GetNamespace(), pod.Spec.ServiceAccountName, err))
	}
	if v, ok := sa.Annotations[EnforceMountableSecretsAnnotation]; ok {
		if enforce, _ := strconv.ParseBool(v); enforce { // not a boolean: not enforced, as Kubernetes
			if err := limitSecretReferences(sa, pod); err != nil {
				return admission.NewForbidden(a, err)
			}
		}
	}
	return nil
}

// podOf is the pod a request creates, if it is one (not a subresource).
func podOf(a admission.Attributes) (*corev1.Pod, bool) {
	if a.GetResource().GroupResource() != corev1.Resource("pods") || a.GetSubresource() != "" {
		return nil, false
	}
	pod, ok := a.GetObject().(*corev1.Pod)
	return pod, ok && pod != nil
}

// serviceAccount reads an account; the default account, which the serviceaccount reconciler
// makes with the namespace, is waited for a little (10 tries, 100–200 ms apart, as Kubernetes).
func (p *Plugin) serviceAccount(ctx context.Context, namespace, name string) (*corev1.ServiceAccount, error) {
	tries := 1
	if name == DefaultServiceAccountName {
		tries = 10
	}
	interval := time.Duration(rand.Int64N(100)+100) * time.Millisecond
	for i := 0; i < tries; i++ {
		if i != 0 {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-p.clock.After(interval):
			}
		}
		o, ok := p.store.Get(eventlog.Key{Resource: "serviceaccounts", Namespace: namespace, Name: name})
		if !ok {
			continue
		}
		obj, err := o.Decode()
		if err != nil {
			return nil, err
		}
		sa, ok := obj.(*corev1.ServiceAccount)
		if !ok {
			return nil, fmt.Errorf("serviceaccount %q decodes to %T", name, obj)
		}
		return sa, nil
	}
	return nil, apierrors.NewNotFound(corev1.Resource("serviceaccount"), name)
}

func shouldAutomount(sa *corev1.ServiceAccount, pod *corev1.Pod) bool {
	if pod.Spec.AutomountServiceAccountToken != nil {
		return *pod.Spec.AutomountServiceAccountToken
	}
	if sa.AutomountServiceAccountToken != nil {
		return *sa.AutomountServiceAccountToken
	}
	return true
}

// mountServiceAccountToken is Kubernetes': every container (and init container) that mounts
// nothing at the default path mounts the token volume there; the volume is added if one of them
// needs it and the pod has no kube-api-access- volume yet.
func (p *Plugin) mountServiceAccountToken(pod *corev1.Pod) {
	volumeName, hasVolume := "", false
	for _, v := range pod.Spec.Volumes {
		if strings.HasPrefix(v.Name, ServiceAccountVolumeName+"-") {
			volumeName, hasVolume = v.Name, true
			break
		}
	}
	if volumeName == "" {
		volumeName = p.generateName(ServiceAccountVolumeName + "-")
	}
	mount := corev1.VolumeMount{Name: volumeName, ReadOnly: true, MountPath: DefaultAPITokenMountPath}
	needs := false
	add := func(cs []corev1.Container) {
		for i := range cs {
			mounted := false
			for _, m := range cs[i].VolumeMounts {
				if m.MountPath == DefaultAPITokenMountPath {
					mounted = true
					break
				}
			}
			if !mounted {
				cs[i].VolumeMounts = append(cs[i].VolumeMounts, mount)
				needs = true
			}
		}
	}
	add(pod.Spec.InitContainers)
	add(pod.Spec.Containers)
	if !hasVolume && needs {
		pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: volumeName, VolumeSource: corev1.VolumeSource{Projected: TokenVolumeSource()}})
	}
}

// TokenVolumeSource is the projected volume of the token, the CA and the namespace.
func TokenVolumeSource() *corev1.ProjectedVolumeSource {
	mode := corev1.ProjectedVolumeSourceDefaultMode
	exp := int64(TokenExpirationSeconds)
	return &corev1.ProjectedVolumeSource{
		DefaultMode: &mode,
		Sources: []corev1.VolumeProjection{
			{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: &exp}},
			{ConfigMap: &corev1.ConfigMapProjection{
				LocalObjectReference: corev1.LocalObjectReference{Name: RootCAConfigMap},
				Items:                []corev1.KeyToPath{{Key: RootCAKey, Path: RootCAKey}},
			}},
			{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{{
				Path: "namespace", FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.namespace"},
			}}}},
		},
	}
}

// limitSecretReferences is Kubernetes': with the account's enforce-mountable-secrets, a pod may
// use only the secrets (and image pull secrets) the account lists.
func limitSecretReferences(sa *corev1.ServiceAccount, pod *corev1.Pod) error {
	mountable := sets.New[string]()
	for _, s := range sa.Secrets {
		mountable.Insert(s.Name)
	}
	for _, v := range pod.Spec.Volumes {
		if v.Secret != nil && !mountable.Has(v.Secret.SecretName) {
			return fmt.Errorf("volume with secret.secretName=\"%s\" is not allowed because service account %s does not reference that secret", v.Secret.SecretName, sa.Name)
		}
	}
	for _, c := range pod.Spec.InitContainers {
		for _, e := range c.Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && !mountable.Has(e.ValueFrom.SecretKeyRef.Name) {
				return fmt.Errorf("init container %s with envVar %s referencing secret.secretName=\"%s\" is not allowed because service account %s does not reference that secret", c.Name, e.Name, e.ValueFrom.SecretKeyRef.Name, sa.Name)
			}
		}
	}
	for _, c := range pod.Spec.Containers {
		for _, e := range c.Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && !mountable.Has(e.ValueFrom.SecretKeyRef.Name) {
				return fmt.Errorf("container %s with envVar %s referencing secret.secretName=\"%s\" is not allowed because service account %s does not reference that secret", c.Name, e.Name, e.ValueFrom.SecretKeyRef.Name, sa.Name)
			}
		}
	}
	pull := sets.New[string]()
	for _, s := range sa.ImagePullSecrets {
		pull.Insert(s.Name)
	}
	for i, ref := range pod.Spec.ImagePullSecrets {
		if !pull.Has(ref.Name) {
			return fmt.Errorf(`imagePullSecrets[%d].name="%s" is not allowed because service account %s does not reference that imagePullSecret`, i, ref.Name, sa.Name)
		}
	}
	return nil
}
