package main

import (
	"archive/tar"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/logplane/logplane/dataplane/ociimage"
)

// imagesCommand builds the stand-ins of the suite's images as OCI archives, one per reference,
// each named exactly as the suite asks for it.
func imagesCommand(args []string) error {
	fs := flag.NewFlagSet("images", flag.ContinueOnError)
	agnhost := fs.String("agnhost", "", "static agnhost binary (go build k8s.io/kubernetes/test/images/agnhost)")
	agnhostSrc := fs.String("agnhost-src", "", "k8s.io/kubernetes's test/images directory, for the files the images carry (porter's certificate, kitten's and nautilus's pages)")
	busybox := fs.String("busybox", ociimage.DefaultBusybox, "static busybox binary (Debian's busybox-static)")
	out := fs.String("o", "", "directory to write the archives to")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *agnhost == "" || *out == "" {
		return fmt.Errorf("images: -agnhost and -o are required")
	}
	b := &imageBuilder{agnhost: *agnhost, src: *agnhostSrc, busybox: *busybox}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	for _, ref := range fs.Args() {
		img, what, err := b.build(ref)
		if err != nil {
			return fmt.Errorf("images: %s: %w", ref, err)
		}
		if img == nil {
			fmt.Printf("not provided: %s (%s)\n", ref, what)
			continue
		}
		file := filepath.Join(*out, strings.NewReplacer("/", "_", ":", "_").Replace(ref)+".tar")
		if err := ociimage.WriteArchive(file, ref, img); err != nil {
			return err
		}
		fmt.Printf("built %s: %s\n", ref, what)
	}
	return nil
}

type imageBuilder struct {
	agnhost, src, busybox string
}

// build makes the stand-in of ref, chosen by the image's name: nil with the reason if there is none.
func (b *imageBuilder) build(ref string) (v1.Image, string, error) {
	name := ref
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		name = name[:i]
	}
	repo := path.Base(name)
	switch {
	case strings.HasPrefix(ref, "invalid.") || strings.Contains(ref, "authenticated"):
		return nil, "the suite expects it to be unreachable", nil
	case repo == "agnhost":
		img, err := b.agnhostImage(nil, nil)
		return img, "agnhost on busybox with a curl stand-in, ENTRYPOINT /agnhost, CMD pause (as upstream's, on alpine)", err
	case repo == "pause":
		img, err := b.agnhostImage([]string{"/agnhost", "pause"}, nil)
		return img, "`agnhost pause` (exits on SIGTERM, as /pause does)", err
	case repo == "busybox":
		img, err := b.busyboxImage()
		return img, "Debian's busybox-static with every applet in /bin, CMD sh", err
	case repo == "kitten" || repo == "nautilus":
		files, err := b.htmlFiles(repo)
		if err != nil {
			return nil, "", err
		}
		img, err := b.agnhostImage(nil, []string{"test-webserver"}, files...)
		return img, "agnhost test-webserver serving its html/ on port 80 (as upstream's)", err
	case repo == "nginx" || repo == "httpd":
		img, err := b.webServer(repo)
		return img, "busybox httpd serving an index page on port 80 (stand-in for " + repo + ")", err
	case repo == "nonroot":
		img, err := b.busyboxImage()
		if err != nil {
			return nil, "", err
		}
		img, err = configure(img, func(c *v1.Config) { c.User = "1234"; c.Cmd = []string{"sleep", "3600"} })
		return img, "busybox, USER 1234", err
	case repo == "jessie-dnsutils":
		img, err := b.agnhostImage(nil, nil)
		return img, "agnhost on busybox (busybox nslookup; no dig)", err
	}
	return nil, "no stand-in for this image", nil
}

// curlShim stands in for the curl of upstream's agnhost image, which the suite's network tests run
// as `curl -g -q -s [--max-time N] [--connect-timeout N] URL`: busybox wget, bounded with timeout
// (Debian's busybox 1.35 `wget -T` crashes).
const curlShim = `#!/bin/sh
# curl stand-in (ops/conformance): the URL through busybox wget.
max=60 url= out=- method=
while [ $# -gt 0 ]; do
	case $1 in
	-m | --max-time) max=${2%%.*}; shift ;;
	--connect-timeout | -w | -H | -d | --data | -A | -u | --resolve) shift ;;
	-X | --request) method=$2; shift ;;
	-o | --output) out=$2; shift ;;
	-*) ;;
	*) url=$1 ;;
	esac
	shift
done
[ -n "$url" ] || { echo "curl: no URL specified" >&2; exit 2; }
if [ "$method" = POST ]; then
	exec timeout "$max" wget -q -O "$out" --post-data= "$url"
fi
exec timeout "$max" wget -q -O "$out" "$url"
`

// agnhostImage is busybox with /agnhost and what upstream's Dockerfile adds (porter's TLS pair,
// /uploads, the user and group defined in the image), plus extra files in the working directory /.
func (b *imageBuilder) agnhostImage(entrypoint, cmd []string, extra ...file) (v1.Image, error) {
	img, err := b.busyboxImage()
	if err != nil {
		return nil, err
	}
	bin, err := os.ReadFile(b.agnhost)
	if err != nil {
		return nil, err
	}
	files := []file{
		{name: "agnhost", mode: 0o755, data: bin},
		{name: "agnhost-2", mode: 0o777, link: "agnhost"},
		{name: "uploads", mode: 0o755, dir: true},
		{name: "usr/local", mode: 0o755, dir: true},
		{name: "usr/local/bin", mode: 0o755, dir: true},
		{name: "usr/local/bin/curl", mode: 0o755, data: []byte(curlShim)},
		{name: "etc/passwd", mode: 0o644, data: []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\nuser-defined-in-image:x:1000:1000::/home/user-defined-in-image:/bin/sh\n")},
		{name: "etc/group", mode: 0o644, data: []byte("root:x:0:\nnogroup:x:65534:\nuser-defined-in-image:x:1000:\ngroup-defined-in-image:x:50000:user-defined-in-image\n")},
	}
	if b.src != "" {
		for _, f := range []string{"localhost.crt", "localhost.key"} {
			data, err := os.ReadFile(filepath.Join(b.src, "agnhost", "porter", f))
			if err != nil {
				return nil, err
			}
			files = append(files, file{name: f, mode: 0o644, data: data})
		}
	}
	l, err := layerOf(append(files, extra...))
	if err != nil {
		return nil, err
	}
	if img, err = mutate.AppendLayers(img, l); err != nil {
		return nil, err
	}
	if entrypoint == nil {
		entrypoint, cmd = []string{"/agnhost"}, orDefault(cmd, []string{"pause"})
	}
	return configure(img, func(c *v1.Config) {
		c.Entrypoint, c.Cmd, c.WorkingDir = entrypoint, cmd, "/"
		c.ExposedPorts = map[string]struct{}{"80/tcp": {}, "8080/tcp": {}, "8081/tcp": {}, "9376/tcp": {}, "5000/tcp": {}}
	})
}

// busyboxImage is ociimage.Busybox with a link in /bin for every applet the binary has
// (`busybox --list`), as the suite's busybox has: its tests run sysctl, getent, ... as
// /bin/<applet>.
func (b *imageBuilder) busyboxImage() (v1.Image, error) {
	img, err := ociimage.Busybox(b.busybox)
	if err != nil {
		return nil, err
	}
	out, err := exec.Command(b.busybox, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list: %w", b.busybox, err)
	}
	have := map[string]bool{"busybox": true}
	for _, a := range ociimage.Applets {
		have[a] = true
	}
	var links []file
	for _, a := range strings.Fields(string(out)) {
		if !have[a] {
			links = append(links, file{name: "bin/" + a, mode: 0o777, link: "busybox"})
		}
	}
	l, err := layerOf(links)
	if err != nil {
		return nil, err
	}
	return mutate.AppendLayers(img, l)
}

func orDefault(v, def []string) []string {
	if v == nil {
		return def
	}
	return v
}

// htmlFiles are the pages of the kitten or nautilus image (test/images/<repo>/html).
func (b *imageBuilder) htmlFiles(repo string) ([]file, error) {
	if b.src == "" {
		return nil, nil
	}
	dir := filepath.Join(b.src, repo, "html")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var files []file
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		files = append(files, file{name: e.Name(), mode: 0o644, data: data})
	}
	return files, nil
}

// webServer is busybox's httpd in the foreground on port 80, serving a page like the real server's.
func (b *imageBuilder) webServer(repo string) (v1.Image, error) {
	img, err := b.busyboxImage()
	if err != nil {
		return nil, err
	}
	page := "<html><body><h1>It works!</h1></body></html>\n"
	root := "usr/local/apache2/htdocs"
	if repo == "nginx" {
		page = "<!DOCTYPE html>\n<html>\n<head>\n<title>Welcome to nginx!</title>\n</head>\n<body>\n<h1>Welcome to nginx!</h1>\n</body>\n</html>\n"
		root = "usr/share/nginx/html"
	}
	var files []file
	for p := root; p != "."; p = path.Dir(p) {
		files = append([]file{{name: p, mode: 0o755, dir: true}}, files...)
	}
	files = append(files, file{name: root + "/index.html", mode: 0o644, data: []byte(page)})
	l, err := layerOf(files)
	if err != nil {
		return nil, err
	}
	if img, err = mutate.AppendLayers(img, l); err != nil {
		return nil, err
	}
	return configure(img, func(c *v1.Config) {
		c.Entrypoint, c.Cmd = nil, []string{"httpd", "-f", "-p", "80", "-h", "/" + root}
		c.ExposedPorts = map[string]struct{}{"80/tcp": {}}
	})
}

func configure(img v1.Image, edit func(*v1.Config)) (v1.Image, error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	edit(&cf.Config)
	return mutate.ConfigFile(img, cf)
}

// file is an entry of a layer.
type file struct {
	name string
	mode int64
	data []byte
	link string
	dir  bool
}

// layerOf makes a reproducible layer (every time the epoch) of files.
func layerOf(files []file) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: f.mode, ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
		switch {
		case f.dir:
			h.Typeflag, h.Name = tar.TypeDir, f.name+"/"
		case f.link != "":
			h.Typeflag, h.Linkname = tar.TypeSymlink, f.link
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(f.data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}, tarball.WithMediaType(types.OCILayer))
}
