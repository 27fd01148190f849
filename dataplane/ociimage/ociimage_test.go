package ociimage_test

import (
	"archive/tar"
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/logplane/logplane/dataplane/ociimage"
)

// TestBusyboxFilesystem checks that the image has what a distribution's base
// image has: the empty mount-point directories, /etc and /tmp, the shell.
func TestBusyboxFilesystem(t *testing.T) {
	if _, err := os.Stat(ociimage.DefaultBusybox); err != nil {
		if os.Getenv("LOGPLANE_REQUIRE_ROOT_TESTS") == "1" {
			t.Fatalf("busybox-static is required: %v", err)
		}
		t.Skipf("needs busybox-static (apt-get install -y busybox-static): %v", err)
	}
	img, err := ociimage.Busybox("")
	if err != nil {
		t.Fatal(err)
	}
	rc := mutate.Extract(img)
	defer rc.Close()
	got := map[string]byte{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got[strings.TrimSuffix(h.Name, "/")] = h.Typeflag
	}
	for _, d := range []string{"dev", "proc", "sys", "etc", "tmp"} {
		if got[d] != tar.TypeDir {
			t.Errorf("%s: not a directory in the image (typeflag %q)", d, got[d])
		}
	}
	for _, f := range []string{"bin/busybox", "bin/sh", "etc/passwd"} {
		if _, ok := got[f]; !ok {
			t.Errorf("%s missing from the image", f)
		}
	}
}
