package apiserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/mergepatch"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"sigs.k8s.io/yaml"

	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/registry"
	"github.com/logplane/logplane/validation"
)

type (
	schemaGVK = schema.GroupVersionKind
	schemaGR  = schema.GroupResource
)

// patchType reads the Content-Type of a PATCH.
func patchType(r *http.Request) (types.PatchType, error) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		return "", newUnsupportedMediaType(r.Header.Get("Content-Type"))
	}
	switch pt := types.PatchType(mt); pt {
	case types.JSONPatchType, types.MergePatchType, types.StrategicMergePatchType, types.ApplyYAMLPatchType:
		return pt, nil
	}
	return "", apierrors.NewGenericServerResponse(http.StatusUnsupportedMediaType, "patch", schema.GroupResource{}, "",
		fmt.Sprintf("the body of the request was in an unknown format - accepted media types include: %s, %s, %s, %s",
			types.JSONPatchType, types.MergePatchType, types.StrategicMergePatchType, types.ApplyYAMLPatchType), 0, false)
}

// applyJSONPatch applies a JSON, merge or strategic merge patch to the JSON of an object.
func applyJSONPatch(pt types.PatchType, cur []byte, patch []byte, schemaObj runtime.Object) ([]byte, error) {
	switch pt {
	case types.JSONPatchType:
		p, err := jsonpatch.DecodePatch(patch)
		if err != nil {
			return nil, apierrors.NewBadRequest(err.Error())
		}
		if len(p) > maxJSONPatchOperations {
			return nil, apierrors.NewRequestEntityTooLargeError(
				fmt.Sprintf("The allowed maximum operations in a JSON patch is %d, got %d", maxJSONPatchOperations, len(p)))
		}
		out, err := applyJSONPatchOps(p, cur)
		if err != nil {
			return nil, apierrors.NewGenericServerResponse(http.StatusUnprocessableEntity, "", schema.GroupResource{}, "", err.Error(), 0, false)
		}
		return out, nil
	case types.MergePatchType:
		out, err := jsonpatch.MergePatch(cur, patch)
		if err != nil {
			return nil, apierrors.NewBadRequest(err.Error())
		}
		return out, nil
	case types.StrategicMergePatchType:
		var pm map[string]any
		if err := json.Unmarshal(patch, &pm); err != nil {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("invalid strategic merge patch: %v", err))
		}
		return strategicMergePatch(cur, patch, schemaObj)
	}
	return nil, apierrors.NewBadRequest(fmt.Sprintf("unsupported patch type %s", pt))
}

// maxJSONPatchOperations bounds the operations of a JSON patch, as kube-apiserver does (413).
const maxJSONPatchOperations = 10000

// applyJSONPatchOps applies a JSON patch. json-patch panics on a "test" of the whole document
// ("path": "") without a value, where kube-apiserver answers 500; here it is the patch that
// cannot be applied, as any failed test: a 422.
func applyJSONPatchOps(p jsonpatch.Patch, cur []byte) (out []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, fmt.Errorf("the JSON patch cannot be applied: %v", r)
		}
	}()
	return p.Apply(cur)
}

// strategicMergePatch applies a strategic merge patch with apimachinery's strategicpatch, its
// errors made Statuses as Kubernetes' patch handler interprets them
// (interpretStrategicMergePatchError: 422 for a list of lists and retainKeys that do not match,
// 400 for the other patch format errors); the errors Kubernetes passes on as they are (a merge
// key missing, a value of the wrong type: 500 there) are 400s here, for they are about the
// patch. strategicpatch panics on a patch whose merge key is not a scalar (comparing maps or
// lists, kubernetes#127056) or that lists maps to delete from a primitive list: that is the
// patch not fitting the schema too, so a 400, never a crash.
func strategicMergePatch(cur, patch []byte, schemaObj runtime.Object) (out []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			out, err = nil, apierrors.NewBadRequest(fmt.Sprintf("the strategic merge patch does not fit the schema of %T: %v", schemaObj, p))
		}
	}()
	out, err = strategicpatch.StrategicMergePatch(cur, patch, schemaObj)
	switch {
	case err == nil:
		return out, nil
	case errors.Is(err, mergepatch.ErrNoListOfLists), errors.Is(err, mergepatch.ErrPatchContentNotMatchRetainKeys):
		return nil, apierrors.NewGenericServerResponse(http.StatusUnprocessableEntity, "", schema.GroupResource{}, "", err.Error(), 0, false)
	}
	return nil, apierrors.NewBadRequest(err.Error())
}

// patchedObject applies a non-apply patch to cur, an object of kind k, and decodes the result.
func patchedObject(pt types.PatchType, k *kinds.Kind, cur runtime.Object, patch []byte, strict bool) (runtime.Object, []string, error) {
	// The current resourceVersion is no precondition unless the patch sets one.
	if m, err := meta.Accessor(cur); err == nil {
		m.SetResourceVersion("")
	}
	curJSON, err := json.Marshal(cur)
	if err != nil {
		return nil, nil, apierrors.NewInternalError(err)
	}
	out, err := applyJSONPatch(pt, curJSON, patch, k.New())
	if err != nil {
		return nil, nil, err
	}
	obj, _, err := strictJSON.Decode(out, &k.GroupVersionKind, k.New())
	var warnings []string
	if err != nil {
		if !runtime.IsStrictDecodingError(err) || obj == nil {
			return nil, nil, apierrors.NewBadRequest(fmt.Sprintf("the patched object is not a valid %s: %v", k.Kind, err))
		}
		if strict {
			return nil, nil, apierrors.NewBadRequest(err.Error())
		}
		warnings = append(warnings, err.Error())
	}
	if got := obj.GetObjectKind().GroupVersionKind(); got != k.GroupVersionKind {
		return nil, nil, apierrors.NewBadRequest(fmt.Sprintf("a patch may not change the kind of an object (to %s)", got))
	}
	return obj, warnings, nil
}

func (s *Server) servePatch(w http.ResponseWriter, r *http.Request, info requestInfo, out output) {
	k := info.kind
	pt, err := patchType(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	strict, warn, err := fieldValidation(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	patch, err := s.readBody(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	req, err := s.writeRequest(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	if pt == types.StrategicMergePatchType && k.Unstructured {
		// As on Kubernetes: strategic merge needs the Go type's patch strategies.
		writeError(w, r, apierrors.NewGenericServerResponse(http.StatusUnsupportedMediaType, "patch", k.GroupResource(), info.name,
			fmt.Sprintf("the body of the request was in an unknown format - accepted media types include: %s, %s, %s",
				types.JSONPatchType, types.MergePatchType, types.ApplyYAMLPatchType), 0, false))
		return
	}
	var warnings []string
	opts := registry.UpdateOptions{Subresource: info.subresource}
	var mutate registry.Mutation
	if pt == types.ApplyYAMLPatchType {
		if r.URL.Query().Get("fieldManager") == "" {
			writeError(w, r, apierrors.NewBadRequest("PATCH /apply requires fieldManager"))
			return
		}
		applied, err := s.appliedObject(patch, k, info, strict)
		if err != nil {
			writeError(w, r, err)
			return
		}
		force := isTrue(r.URL.Query().Get("force"))
		fm, err := s.reg.FieldManager(k, info.subresource)
		if err != nil {
			writeError(w, r, apierrors.NewInternalError(err))
			return
		}
		opts.Applied = true
		mutate = func(cur runtime.Object) (runtime.Object, error) {
			if m, err := meta.Accessor(cur); err == nil {
				m.SetResourceVersion("")
			}
			return applyErr(fm.Apply(cur, applied.DeepCopy(), req.FieldManager, force))
		}
		if info.subresource == "" {
			opts.CreateIfMissing = func(ctx context.Context) (runtime.Object, error) {
				live := k.New()
				lm, _ := meta.Accessor(live)
				lm.SetName(info.name)
				lm.SetNamespace(info.namespace)
				obj, err := applyErr(fm.Apply(live, applied.DeepCopy(), req.FieldManager, force))
				if err != nil {
					return nil, err
				}
				return s.reg.CreateApplied(ctx, k, obj, req)
			}
		}
	} else {
		if len(patch) == 0 {
			writeError(w, r, apierrors.NewBadRequest("the request has no body"))
			return
		}
		mutate = func(cur runtime.Object) (runtime.Object, error) {
			obj, ws, err := patchedObject(pt, k, cur, patch, strict)
			if err != nil {
				return nil, err
			}
			warnings = ws
			return obj, nil
		}
	}
	created := false
	if opts.CreateIfMissing != nil {
		inner := opts.CreateIfMissing
		opts.CreateIfMissing = func(ctx context.Context) (runtime.Object, error) {
			created = true
			return inner(ctx)
		}
	}
	obj, err := s.reg.Modify(r.Context(), k, info.namespace, info.name, req, opts, mutate)
	if err != nil {
		writeError(w, r, err)
		return
	}
	if warn {
		setWarnings(w, warnings)
	}
	code := http.StatusOK
	if created {
		code = http.StatusCreated
	}
	writeObject(w, r, code, out, obj)
}

// applyErr makes the errors of server-side apply Statuses: conflicts are already 409s; the
// rest are about the apply configuration, so 400s.
func applyErr(obj runtime.Object, err error) (runtime.Object, error) {
	if err == nil {
		return obj, nil
	}
	var se apierrors.APIStatus
	if errors.As(err, &se) {
		return nil, err
	}
	return nil, apierrors.NewBadRequest(err.Error())
}

// appliedObject reads a server-side apply configuration, which must name the object of the URL.
func (s *Server) appliedObject(patch []byte, k *kinds.Kind, info requestInfo, strict bool) (*unstructured.Unstructured, error) {
	u := &unstructured.Unstructured{Object: map[string]any{}}
	if err := yaml.Unmarshal(patch, &u.Object); err != nil {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("error decoding YAML: %v", err))
	}
	if u.Object == nil {
		return nil, apierrors.NewBadRequest("the apply configuration is empty")
	}
	if u.GetAPIVersion() != k.GroupVersion().String() || u.GetKind() != k.Kind {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("the apply configuration must have apiVersion %s and kind %s, not %q and %q",
			k.GroupVersion(), k.Kind, u.GetAPIVersion(), u.GetKind()))
	}
	if u.GetName() != "" && u.GetName() != info.name {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("the name of the object (%s) does not match the name on the URL (%s)", u.GetName(), info.name))
	}
	if info.namespace != "" && u.GetNamespace() != "" && u.GetNamespace() != info.namespace {
		return nil, apierrors.NewBadRequest("the namespace of the provided object does not match the namespace sent on the request")
	}
	if len(u.GetManagedFields()) > 0 {
		return nil, apierrors.NewBadRequest("metadata.managedFields must be nil")
	}
	// Decode into the typed object: wrong types are 400s, and unknown fields too when strict.
	b, err := json.Marshal(u.Object)
	if err != nil {
		return nil, apierrors.NewBadRequest(err.Error())
	}
	if _, _, err := strictJSON.Decode(b, &k.GroupVersionKind, k.New()); err != nil && (strict || !runtime.IsStrictDecodingError(err)) {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("%s in version %q cannot be handled as a %s: %v", k.Kind, k.Version, k.Kind, err))
	}
	return u, nil
}

// serveScale serves the scale subresource as an autoscaling/v1 Scale.
func (s *Server) serveScale(w http.ResponseWriter, r *http.Request, info requestInfo, out output) {
	k := info.kind
	switch info.verb {
	case "get":
		opts, _, err := s.readOptions(r)
		if err != nil {
			writeError(w, r, err)
			return
		}
		obj, err := s.reg.Get(r.Context(), k, info.namespace, info.name, opts)
		if err != nil {
			writeError(w, r, err)
			return
		}
		sc, err := scaleOf(k, obj)
		if err != nil {
			writeError(w, r, err)
			return
		}
		writeObject(w, r, http.StatusOK, out, sc)
	case "update", "patch":
		req, err := s.writeRequest(r)
		if err != nil {
			writeError(w, r, err)
			return
		}
		var mutateScale func(cur *autoscalingv1.Scale) (*autoscalingv1.Scale, error)
		if info.verb == "update" {
			obj, _, err := s.decodeObjectAs(r, autoscalingv1.SchemeGroupVersion.WithKind("Scale"), &autoscalingv1.Scale{})
			if err != nil {
				writeError(w, r, err)
				return
			}
			want := obj.(*autoscalingv1.Scale)
			if want.Name != info.name {
				writeError(w, r, apierrors.NewBadRequest(fmt.Sprintf("the name of the object (%s) does not match the name on the URL (%s)", want.Name, info.name)))
				return
			}
			mutateScale = func(*autoscalingv1.Scale) (*autoscalingv1.Scale, error) { return want, nil }
		} else {
			pt, err := patchType(r)
			if err != nil || pt == types.ApplyYAMLPatchType {
				if err == nil {
					err = apierrors.NewGenericServerResponse(http.StatusUnsupportedMediaType, "patch", k.GroupResource(), info.name, "server-side apply of the scale subresource is not supported", 0, false)
				}
				writeError(w, r, err)
				return
			}
			patch, err := s.readBody(r)
			if err != nil {
				writeError(w, r, err)
				return
			}
			mutateScale = func(cur *autoscalingv1.Scale) (*autoscalingv1.Scale, error) {
				cur.ResourceVersion = ""
				curJSON, err := json.Marshal(cur)
				if err != nil {
					return nil, apierrors.NewInternalError(err)
				}
				outJSON, err := applyJSONPatch(pt, curJSON, patch, &autoscalingv1.Scale{})
				if err != nil {
					return nil, err
				}
				sc := &autoscalingv1.Scale{}
				if err := json.Unmarshal(outJSON, sc); err != nil {
					return nil, apierrors.NewBadRequest(err.Error())
				}
				return sc, nil
			}
		}
		obj, err := s.reg.Modify(r.Context(), k, info.namespace, info.name, req, registry.UpdateOptions{Subresource: "scale"}, func(cur runtime.Object) (runtime.Object, error) {
			sc, err := scaleOf(k, cur)
			if err != nil {
				return nil, err
			}
			want, err := mutateScale(sc)
			if err != nil {
				return nil, err
			}
			if errs := validation.Scale(want.Spec.Replicas); len(errs) > 0 {
				return nil, apierrors.NewInvalid(autoscalingv1.SchemeGroupVersion.WithKind("Scale").GroupKind(), info.name, errs)
			}
			if err := setReplicas(k, cur, want.Spec.Replicas); err != nil {
				return nil, err
			}
			m, _ := meta.Accessor(cur)
			m.SetResourceVersion(want.ResourceVersion)
			if want.UID != "" {
				m.SetUID(want.UID)
			}
			return cur, nil
		})
		if err != nil {
			writeError(w, r, err)
			return
		}
		sc, err := scaleOf(k, obj)
		if err != nil {
			writeError(w, r, err)
			return
		}
		writeObject(w, r, http.StatusOK, out, sc)
	default:
		writeError(w, r, apierrors.NewMethodNotSupported(k.GroupResource(), info.verb+" scale"))
	}
}
