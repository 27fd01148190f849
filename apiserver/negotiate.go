package apiserver

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	"net/http"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	"k8s.io/apiserver/pkg/endpoints/handlers/negotiation"
	"sigs.k8s.io/yaml"

	"github.com/logplane/logplane/kinds"
)

// Media types the server reads and writes.
const (
	mediaJSON     = "application/json"
	mediaYAML     = "application/yaml"
	mediaProtobuf = "application/vnd.kubernetes.protobuf"
	// mediaProtobufWatch is what a protobuf watch stream is sent as.
	mediaProtobufWatch = "application/vnd.kubernetes.protobuf;stream=watch"
)

// output is what a client asked a response to be: a wire format and, optionally, a
// transformation of the object (a Table, or metadata only).
type output struct {
	media string // mediaJSON, mediaYAML or mediaProtobuf
	// as is "", "Table", "PartialObjectMetadata" or "PartialObjectMetadataList".
	as string
	// pretty asks for indented JSON.
	pretty bool
}

var (
	jsonSerializer   = json.NewSerializerWithOptions(json.DefaultMetaFactory, kinds.Scheme, kinds.Scheme, json.SerializerOptions{})
	prettySerializer = json.NewSerializerWithOptions(json.DefaultMetaFactory, kinds.Scheme, kinds.Scheme, json.SerializerOptions{Pretty: true})
	strictJSON       = json.NewSerializerWithOptions(json.DefaultMetaFactory, kinds.Scheme, kinds.Scheme, json.SerializerOptions{Strict: true})
	strictYAML       = json.NewSerializerWithOptions(json.DefaultMetaFactory, kinds.Scheme, kinds.Scheme, json.SerializerOptions{Yaml: true, Strict: true})
	protoSerializer  = protobuf.NewSerializer(kinds.Scheme, kinds.Scheme)
	protoRaw         = protobuf.NewRawSerializer(kinds.Scheme, kinds.Scheme)
)

// mediaTypes are the media types the server writes (JSON, YAML, protobuf), for content
// negotiation; the encoding itself is the server's (output.encode and the encoding cache).
var mediaTypes = serializer.NewCodecFactory(kinds.Scheme).WithoutConversion()

// unstructuredMediaTypes are mediaTypes without protobuf: what objects of kinds without a Go type
// can be written as.
var unstructuredMediaTypes = withoutProtobuf{mediaTypes}

type withoutProtobuf struct{ runtime.NegotiatedSerializer }

func (w withoutProtobuf) SupportedMediaTypes() []runtime.SerializerInfo {
	var out []runtime.SerializerInfo
	for _, info := range w.NegotiatedSerializer.SupportedMediaTypes() {
		if info.MediaType != mediaProtobuf {
			out = append(out, info)
		}
	}
	return out
}

// negotiate picks the response format from the Accept header as kube-apiserver does
// (k8s.io/apiserver's negotiation: q-values, `as=Table;g=meta.k8s.io;v=v1` and `pretty`
// parameters, the stream=watch parameter), for an endpoint that allows what endpoint allows. The
// error, when nothing the client accepts can be served, is Kubernetes' 406.
func negotiate(r *http.Request, endpoint negotiation.EndpointRestrictions) (output, error) {
	return negotiateWith(r, mediaTypes, endpoint)
}

// negotiateWith is negotiate among the media types of ns.
func negotiateWith(r *http.Request, ns runtime.NegotiatedSerializer, endpoint negotiation.EndpointRestrictions) (output, error) {
	opts, info, err := negotiation.NegotiateOutputMediaType(r, ns, endpoint)
	if err != nil {
		return output{}, err
	}
	out := output{media: info.MediaType, pretty: info.PrettySerializer != nil && info.Serializer == info.PrettySerializer}
	if opts.Convert != nil {
		out.as = opts.Convert.Kind
	}
	return out, nil
}

// negotiateOr is the format negotiate picks for an endpoint that transforms nothing, or JSON when
// the client accepts none: what small answers (a Status, a review) are sent in.
func negotiateOr(r *http.Request) output {
	out, err := negotiate(r, negotiation.DefaultEndpointRestrictions)
	if err != nil {
		return output{media: mediaJSON}
	}
	return out
}

// resourceEndpoint is what the endpoints of the catalog's resources can send, as Kubernetes'
// RequestScope allows: objects in any media type, PartialObjectMetadata[List] in any, and
// Tables in JSON or YAML.
type resourceEndpoint struct{}

var _ negotiation.EndpointRestrictions = resourceEndpoint{}

func (resourceEndpoint) AllowsMediaTypeTransform(mimeType, mimeSubType string, gvk *schema.GroupVersionKind) bool {
	if gvk == nil {
		return true
	}
	if gvk.Group != metav1.GroupName || (gvk.Version != "v1" && gvk.Version != "v1beta1") {
		return false
	}
	switch gvk.Kind {
	case "Table":
		return mimeType == "application" && (mimeSubType == "json" || mimeSubType == "yaml")
	case "PartialObjectMetadata", "PartialObjectMetadataList":
		return true
	}
	return false
}

func (resourceEndpoint) AllowsServerVersion(v string) bool {
	return v == metav1.SchemeGroupVersion.Version
}
func (resourceEndpoint) AllowsStreamSchema(s string) bool { return s == "watch" }

// contentType is the Content-Type of a response in format o.
func (o output) contentType() string {
	return o.media
}

// encode writes obj in format o.
func (o output) encode(w io.Writer, obj runtime.Object) error {
	switch o.media {
	case mediaProtobuf:
		return protoSerializer.Encode(obj, w)
	case mediaYAML:
		var buf bytes.Buffer
		if err := jsonSerializer.Encode(obj, &buf); err != nil {
			return err
		}
		y, err := yaml.JSONToYAML(buf.Bytes())
		if err != nil {
			return err
		}
		_, err = w.Write(y)
		return err
	}
	if o.pretty {
		return prettySerializer.Encode(obj, w)
	}
	return jsonSerializer.Encode(obj, w)
}

// decodeBody reads a request body of kind k (or of the type of into) per its Content-Type.
// Unknown and duplicate fields are errors when strict is set, and warnings otherwise (returned
// in warnings). Malformed bodies, and bodies of another kind, are 400s.
func decodeBody(r *http.Request, body []byte, gvk schema.GroupVersionKind, into runtime.Object, strict bool) (runtime.Object, []string, error) {
	ct := r.Header.Get("Content-Type")
	mt := mediaJSON
	if ct != "" {
		var err error
		mt, _, err = mime.ParseMediaType(ct)
		if err != nil {
			return nil, nil, newUnsupportedMediaType(ct)
		}
	}
	var obj runtime.Object
	var err error
	switch mt {
	case mediaJSON, "*/*":
		obj, _, err = strictJSON.Decode(body, &gvk, into)
	case mediaYAML, "application/x-yaml", "text/yaml":
		obj, _, err = strictYAML.Decode(body, &gvk, into)
	case mediaProtobuf:
		obj, _, err = protoSerializer.Decode(body, &gvk, into)
	default:
		return nil, nil, newUnsupportedMediaType(ct)
	}
	var warnings []string
	if err != nil {
		if !runtime.IsStrictDecodingError(err) || obj == nil {
			return nil, nil, apierrors.NewBadRequest(fmt.Sprintf("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf: %v", err))
		}
		if strict {
			return nil, nil, apierrors.NewBadRequest(err.Error())
		}
		if se, ok := err.(interface{ Errors() []error }); ok {
			for _, e := range se.Errors() {
				warnings = append(warnings, e.Error())
			}
		}
	}
	got := obj.GetObjectKind().GroupVersionKind()
	if got != gvk {
		return nil, nil, apierrors.NewBadRequest(fmt.Sprintf("the API version in the data (%s) does not match the expected API version (%s) or kind (%s vs %s)",
			got.GroupVersion(), gvk.GroupVersion(), got.Kind, gvk.Kind))
	}
	return obj, warnings, nil
}

func newUnsupportedMediaType(ct string) error {
	return apierrors.NewGenericServerResponse(http.StatusUnsupportedMediaType, "", schema.GroupResource{}, "",
		fmt.Sprintf("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (got %q)", ct), 0, false)
}

// fieldValidation reads the fieldValidation parameter: Strict makes unknown fields errors,
// Warn (the default) warnings, Ignore drops them silently.
func fieldValidation(r *http.Request) (strict, warn bool, err error) {
	switch v := r.URL.Query().Get("fieldValidation"); v {
	case "", metav1.FieldValidationWarn:
		return false, true, nil
	case metav1.FieldValidationStrict:
		return true, false, nil
	case metav1.FieldValidationIgnore:
		return false, false, nil
	default:
		return false, false, apierrors.NewBadRequest(fmt.Sprintf("fieldValidation must be one of Ignore, Warn or Strict, not %q", v))
	}
}
