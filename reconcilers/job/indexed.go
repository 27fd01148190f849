package job

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
)

// The completion index of an Indexed Job's pod, as Kubernetes writes it.
const (
	completionIndexEnv = "JOB_COMPLETION_INDEX"
	unknownIndex       = -1
)

// indexOf returns the completion index of a pod (from its annotation, else its label), or
// unknownIndex.
func indexOf(p *corev1.Pod) int {
	v, ok := p.Annotations[batchv1.JobCompletionIndexAnnotation]
	if !ok {
		v, ok = p.Labels[batchv1.JobCompletionIndexAnnotation]
	}
	if !ok {
		return unknownIndex
	}
	i, err := strconv.Atoi(v)
	if err != nil || i < 0 {
		return unknownIndex
	}
	return i
}

// indexes is a set of completion indexes.
type indexes map[int]bool

// parseIndexes reads status.completedIndexes ("1,3-5,7"), keeping those below completions.
func parseIndexes(s string, completions int) indexes {
	out := indexes{}
	if s == "" {
		return out
	}
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		first, err := strconv.Atoi(lo)
		if err != nil {
			continue
		}
		last := first
		if isRange {
			if last, err = strconv.Atoi(hi); err != nil {
				continue
			}
		}
		for i := first; i <= last && i < completions; i++ {
			out[i] = true
		}
	}
	return out
}

// String is the set in status.completedIndexes' format, as Kubernetes writes it: ascending,
// comma-separated, a run of three or more consecutive indexes as "first-last".
func (s indexes) String() string {
	xs := make([]int, 0, len(s))
	for i := range s {
		xs = append(xs, i)
	}
	slices.Sort(xs)
	var b strings.Builder
	for i := 0; i < len(xs); {
		j := i
		for j+1 < len(xs) && xs[j+1] == xs[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		switch {
		case j == i+1: // two in a row are written as two, as Kubernetes does
			fmt.Fprintf(&b, "%d,%d", xs[i], xs[j])
		case j > i:
			fmt.Fprintf(&b, "%d-%d", xs[i], xs[j])
		default:
			fmt.Fprintf(&b, "%d", xs[i])
		}
		i = j + 1
	}
	return b.String()
}

// addCompletionIndexEnv gives every container (and init container) of a pod the environment
// variable JOB_COMPLETION_INDEX from the completion-index annotation, as Kubernetes does.
func addCompletionIndexEnv(spec *corev1.PodSpec) {
	env := corev1.EnvVar{Name: completionIndexEnv, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{
		FieldPath: fmt.Sprintf("metadata.annotations['%s']", batchv1.JobCompletionIndexAnnotation)}}}
	for _, cs := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
		for i := range cs {
			if !slices.ContainsFunc(cs[i].Env, func(e corev1.EnvVar) bool { return e.Name == completionIndexEnv }) {
				cs[i].Env = append(cs[i].Env, env)
			}
		}
	}
}
