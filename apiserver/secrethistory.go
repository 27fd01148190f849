package apiserver

import (
	"encoding/base64"
	"encoding/json"
	"sort"

	"github.com/logplane/logplane/apiserver/logplaneapi"
	"github.com/logplane/logplane/eventlog"
	"github.com/logplane/logplane/kinds"
)

// lastApplied is the annotation kubectl apply keeps the whole applied object in: for a Secret,
// its values.
const lastApplied = "kubectl.kubernetes.io/last-applied-configuration"

// secretValues are the values of an object's secret fields, by field and key; kept to compare
// revisions, never sent.
type secretValues map[string]map[string]string

// redactSecret takes the secret fields out of obj (the JSON of an object of sealed kind k) and
// returns what is left and the values it took.
func redactSecret(k *kinds.Kind, obj []byte) ([]byte, secretValues, error) {
	var m map[string]any
	if err := json.Unmarshal(obj, &m); err != nil {
		return nil, nil, err
	}
	vals := secretValues{}
	for _, f := range k.Stored().SecretFields {
		fm, _ := m[f].(map[string]any) // absent or not a map: no values
		vals[f] = map[string]string{}
		for key, v := range fm {
			s, _ := v.(string) // Secret data are strings
			vals[f][key] = s
		}
		delete(m, f)
	}
	if md, ok := m["metadata"].(map[string]any); ok {
		if ann, ok := md["annotations"].(map[string]any); ok {
			delete(ann, lastApplied)
			if len(ann) == 0 {
				delete(md, "annotations")
			}
		}
	}
	out, err := json.Marshal(m)
	return out, vals, err
}

// secretKeys says which keys of cur changed since prev (nil for the first revision), with
// their sizes.
func secretKeys(prev, cur secretValues) []logplaneapi.SecretKey {
	var out []logplaneapi.SecretKey
	for f, kv := range cur {
		for key, v := range kv {
			sk := logplaneapi.SecretKey{Field: f, Key: key, Bytes: valueSize(f, v), Change: "unchanged"}
			if old, ok := prev[f][key]; !ok {
				sk.Change = "added"
			} else if old != v {
				sk.Change = "changed"
			}
			out = append(out, sk)
		}
	}
	for f, kv := range prev {
		for key := range kv {
			if _, ok := cur[f][key]; !ok {
				out = append(out, logplaneapi.SecretKey{Field: f, Key: key, Change: "removed"})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Field != out[j].Field {
			return out[i].Field < out[j].Field
		}
		return out[i].Key < out[j].Key
	})
	return out
}

// valueSize is the size of a value: decoded, for data (base64 in JSON).
func valueSize(field, v string) int {
	if field == "data" {
		if b, err := base64.StdEncoding.DecodeString(v); err == nil {
			return len(b)
		}
	}
	return len(v)
}

// forgottenObject is what history shows of a revision whose values were forgotten: what the
// log keeps in clear of it (its name, namespace, uid, labels and type).
func forgottenObject(k *kinds.Kind, rec eventlog.Record) json.RawMessage {
	ref := rec.Event.GetRef()
	md := map[string]any{"name": ref.GetName(), "uid": ref.GetUid()}
	if ref.GetNamespace() != "" {
		md["namespace"] = ref.GetNamespace()
	}
	if l := rec.Event.GetLabels(); len(l) > 0 {
		md["labels"] = l
	}
	obj := map[string]any{"apiVersion": k.GroupVersion().String(), "kind": k.Kind, "metadata": md}
	if t, ok := rec.Event.GetFields()["type"]; ok {
		obj["type"] = t
	}
	b, _ := json.Marshal(obj) // strings and maps of strings always marshal
	return b
}
