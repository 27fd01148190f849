package kindstest

import (
	"math/rand/v2"
	"testing"

	"github.com/logplane/logplane/kinds"
	eventv1 "github.com/logplane/logplane/proto/logplane/event/v1"
)

func TestRealisticPodSize(t *testing.T) {
	pod := RealisticPod(1, rand.New(rand.NewPCG(1, 2)))
	pb, err := kinds.Encode(pod, eventv1.Encoding_ENCODING_PROTOBUF)
	if err != nil {
		t.Fatal(err)
	}
	js, err := kinds.Encode(pod, eventv1.Encoding_ENCODING_JSON)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("realistic pod: %d bytes protobuf, %d bytes JSON", len(pb), len(js))
	if len(pb) < 1500 || len(pb) > 3000 {
		t.Fatalf("the benchmark pod is %d bytes in protobuf, want about 2 KB", len(pb))
	}
}
