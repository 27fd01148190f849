// Package ociimage builds OCI images without a registry or a container
// engine, with go-containerregistry: busybox from Debian's busybox-static,
// and cmd/hello on top of it. It writes them as OCI archives (a tar of an OCI
// image layout) that containerd imports (`lpctl image load`), and tests push
// them to dataplane/ociregistry so that the real pull path is exercised.
package ociimage

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// DefaultBusybox is where Debian's busybox-static installs its binary.
const DefaultBusybox = "/bin/busybox"

// Applets are the busybox applets linked into /bin of the busybox image.
var Applets = []string{
	"[", "[[", "awk", "basename", "cat", "chmod", "chown", "cp", "cut", "date", "dd", "df", "dirname",
	"du", "echo", "env", "expr", "false", "find", "free", "grep", "head", "hostname", "httpd", "id",
	"ifconfig", "ip", "kill", "ln", "ls", "md5sum", "mkdir", "mount", "mv", "nc", "netstat", "nslookup",
	"ping", "printenv", "printf", "ps", "pwd", "readlink", "realpath", "rm", "rmdir", "sed", "seq", "sh",
	"sha256sum", "sleep", "sort", "stat", "tail", "tar", "tee", "test", "top", "touch", "tr", "true", "uname",
	"uniq", "uptime", "vi", "watch", "wc", "wget", "whoami", "xargs", "yes",
}

// epoch is the modification time of every file, so that builds are reproducible.
var epoch = time.Unix(0, 0).UTC()

// entry is a file, directory or symlink of a layer.
type entry struct {
	name     string
	mode     int64
	data     []byte
	linkname string // symlink target if not empty
	dir      bool
}

func layer(entries []entry) (v1.Layer, error) {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: e.mode, ModTime: epoch, Format: tar.FormatPAX}
		switch {
		case e.dir:
			h.Typeflag, h.Name = tar.TypeDir, e.name+"/"
		case e.linkname != "":
			h.Typeflag, h.Linkname = tar.TypeSymlink, e.linkname
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("ociimage: tar header %s: %w", e.name, err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(e.data); err != nil {
				return nil, fmt.Errorf("ociimage: tar %s: %w", e.name, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("ociimage: tar: %w", err)
	}
	data := b.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("ociimage: layer: %w", err)
	}
	return l, nil
}

func base() v1.Image {
	return mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
}

func withConfig(img v1.Image, cfg v1.Config) (v1.Image, error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("ociimage: config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS = "amd64", "linux"
	cf.Created = v1.Time{Time: epoch}
	cf.Config = cfg
	out, err := mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("ociimage: set config: %w", err)
	}
	return out, nil
}

func busyboxLayer(busybox string) (v1.Layer, error) {
	bin, err := os.ReadFile(busybox)
	if err != nil {
		return nil, fmt.Errorf("ociimage: read busybox (install busybox-static): %w", err)
	}
	// /dev, /proc and /sys are empty, as in every distribution's base image
	// (alpine, debian): the runtime mounts over them. Without them runc
	// creates them in each container's writable layer at every start.
	entries := []entry{
		{name: "bin", mode: 0o755, dir: true},
		{name: "bin/busybox", mode: 0o755, data: bin},
		{name: "dev", mode: 0o755, dir: true},
		{name: "proc", mode: 0o555, dir: true},
		{name: "sys", mode: 0o555, dir: true},
		{name: "etc", mode: 0o755, dir: true},
		{name: "etc/passwd", mode: 0o644, data: []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")},
		{name: "etc/group", mode: 0o644, data: []byte("root:x:0:\nnogroup:x:65534:\n")},
		{name: "root", mode: 0o700, dir: true},
		{name: "tmp", mode: 0o1777, dir: true},
		{name: "var", mode: 0o755, dir: true},
		{name: "usr", mode: 0o755, dir: true},
		{name: "usr/bin", mode: 0o755, linkname: "../bin"},
	}
	for _, a := range Applets {
		entries = append(entries, entry{name: "bin/" + a, mode: 0o777, linkname: "busybox"})
	}
	return layer(entries)
}

// Busybox builds a busybox image from the static busybox binary at path
// (DefaultBusybox if empty): /bin/busybox with a symlink for each of Applets,
// /etc/passwd and /etc/group, the empty directories a base image has (/dev,
// /proc, /sys, /tmp, /root, /var), and `sh` as its command.
func Busybox(path string) (v1.Image, error) {
	if path == "" {
		path = DefaultBusybox
	}
	l, err := busyboxLayer(path)
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(base(), l)
	if err != nil {
		return nil, fmt.Errorf("ociimage: busybox: %w", err)
	}
	return withConfig(img, v1.Config{
		Cmd: []string{"sh"},
		Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
	})
}

// Hello builds the image of cmd/hello from its static binary (build it with
// CGO_ENABLED=0): busybox (from busybox, DefaultBusybox if empty) so that exec
// has a shell, and /hello as the entrypoint, listening on port 8080.
func Hello(helloBinary, busybox string) (v1.Image, error) {
	if busybox == "" {
		busybox = DefaultBusybox
	}
	bin, err := os.ReadFile(helloBinary)
	if err != nil {
		return nil, fmt.Errorf("ociimage: read hello binary: %w", err)
	}
	bl, err := busyboxLayer(busybox)
	if err != nil {
		return nil, err
	}
	hl, err := layer([]entry{{name: "hello", mode: 0o755, data: bin}})
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(base(), bl, hl)
	if err != nil {
		return nil, fmt.Errorf("ociimage: hello: %w", err)
	}
	return withConfig(img, v1.Config{
		Entrypoint:   []string{"/hello"},
		Env:          []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "PORT=8080"},
		ExposedPorts: map[string]struct{}{"8080/tcp": {}},
	})
}

// WithUser returns img with its own /etc/passwd and /etc/group (a layer over
// img's, holding the given contents) and with user (e.g. "1000", "app",
// "1000:1000") as the user its config runs as. Tests use it for images that
// run as someone other than root.
func WithUser(img v1.Image, user, passwd, group string) (v1.Image, error) {
	l, err := layer([]entry{
		{name: "etc", mode: 0o755, dir: true},
		{name: "etc/passwd", mode: 0o644, data: []byte(passwd)},
		{name: "etc/group", mode: 0o644, data: []byte(group)},
	})
	if err != nil {
		return nil, err
	}
	out, err := mutate.AppendLayers(img, l)
	if err != nil {
		return nil, fmt.Errorf("ociimage: user layer: %w", err)
	}
	cf, err := out.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("ociimage: config: %w", err)
	}
	cfg := cf.Config
	cfg.User = user
	return withConfig(out, cfg)
}

// WriteArchive writes img as an OCI archive (a tar of an OCI image layout)
// to path, naming it ref (e.g. "docker.io/logplane/hello:latest") with the
// annotations containerd and other tools read the name from.
func WriteArchive(path, ref string, img v1.Image) error {
	dir, err := os.MkdirTemp(filepath.Dir(path), ".oci-layout-")
	if err != nil {
		return fmt.Errorf("ociimage: %w", err)
	}
	defer os.RemoveAll(dir)
	if err := writeLayout(dir, ref, img); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("ociimage: %w", err)
	}
	if err := tarDir(f, dir); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("ociimage: close archive: %w", err)
	}
	return nil
}

func tarDir(w io.Writer, dir string) error {
	tw := tar.NewWriter(w)
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
			return err
		}
		h, err := tar.FileInfoHeader(fi, "")
		if err != nil {
			return err
		}
		h.Name = filepath.ToSlash(rel)
		if fi.IsDir() {
			h.Name += "/"
		}
		h.ModTime = epoch
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			if _, err := io.Copy(tw, f); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("ociimage: tar layout: %w", err)
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("ociimage: tar layout: %w", err)
	}
	return nil
}
