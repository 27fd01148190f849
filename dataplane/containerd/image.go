package containerd

import (
	"context"
	"fmt"
	"io"
	"slices"

	client "github.com/containerd/containerd"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/remotes/docker"
	"github.com/distribution/reference"

	"github.com/logplane/logplane/dataplane/runtimeapi"
)

// NormalizeImage returns the full reference of an image as written in a pod
// spec ("busybox" -> "docker.io/library/busybox:latest").
func NormalizeImage(ref string) (string, error) {
	named, err := reference.ParseDockerRef(ref)
	if err != nil {
		return "", fmt.Errorf("containerd: image %q: %w: %w", ref, runtimeapi.ErrInvalidImageName, err)
	}
	return named.String(), nil
}

// LocalRegistry is the registry name of images that exist only on nodes, brought
// there without a registry (`lpctl image load`, the node agent's image directory),
// like the demo images logplane.local/hello:latest and logplane.local/busybox:latest.
// They are never pulled, whatever the pull policy: a `:latest` tag (policy
// Always) runs the node's copy, and an absent one fails at once, with no lookup
// of a registry that does not exist.
const LocalRegistry = "logplane.local"

// EnsureImage makes the image ref present and unpacked according to the pull
// policy (IfNotPresent if empty; images of LocalRegistry are never pulled).
// Errors wrap runtimeapi.ErrInvalidImageName, ErrImageNeverPull or ErrImagePull.
func (r *Runtime) EnsureImage(ctx context.Context, ref string, policy runtimeapi.PullPolicy) (runtimeapi.Image, error) {
	name, err := NormalizeImage(ref)
	if err != nil {
		return runtimeapi.Image{}, err
	}
	img, err := r.client.GetImage(ctx, name)
	present := err == nil
	if err != nil && !errdefs.IsNotFound(err) {
		return runtimeapi.Image{}, fmt.Errorf("containerd: get image %s: %w", name, err)
	}
	pulled := false
	switch {
	case localImage(name) && !present:
		return runtimeapi.Image{}, fmt.Errorf("containerd: image %s is not on this node, and %s images are never pulled (load it with `lpctl image load`): %w",
			name, LocalRegistry, runtimeapi.ErrImagePull)
	case localImage(name):
		if err := r.ensureUnpacked(ctx, img); err != nil {
			return runtimeapi.Image{}, err
		}
	case policy == runtimeapi.PullNever && !present:
		return runtimeapi.Image{}, fmt.Errorf("containerd: image %s: %w", name, runtimeapi.ErrImageNeverPull)
	case policy == runtimeapi.PullAlways || !present:
		img, err = r.client.Pull(ctx, name,
			client.WithPullUnpack,
			client.WithPullSnapshotter(r.cfg.Snapshotter),
			client.WithResolver(docker.NewResolver(r.resolver())))
		if err != nil {
			return runtimeapi.Image{}, fmt.Errorf("containerd: pull %s: %w: %w", name, runtimeapi.ErrImagePull, err)
		}
		pulled = true
		r.setUnpacked(name)
	default:
		if err := r.ensureUnpacked(ctx, img); err != nil {
			return runtimeapi.Image{}, err
		}
	}
	size, err := img.Size(ctx)
	if err != nil {
		return runtimeapi.Image{}, fmt.Errorf("containerd: image %s size: %w", name, err)
	}
	ic, err := r.imageConfig(ctx, img)
	if err != nil {
		return runtimeapi.Image{}, err
	}
	uid, username := imageUser(ic.User)
	return runtimeapi.Image{Ref: name, ID: imageID(img), Pulled: pulled, Size: size, UID: uid, Username: username}, nil
}

// localImage reports whether the normalized reference name is of LocalRegistry.
func localImage(name string) bool {
	named, err := reference.ParseNormalizedNamed(name)
	return err == nil && reference.Domain(named) == LocalRegistry
}

func imageID(img client.Image) string {
	named, err := reference.ParseNormalizedNamed(img.Name())
	if err != nil {
		return img.Target().Digest.String()
	}
	return reference.TrimNamed(named).String() + "@" + img.Target().Digest.String()
}

func (r *Runtime) setUnpacked(name string) {
	r.mu.Lock()
	r.unpacked[name] = true
	r.mu.Unlock()
}

func (r *Runtime) ensureUnpacked(ctx context.Context, img client.Image) error {
	r.mu.Lock()
	ok := r.unpacked[img.Name()]
	r.mu.Unlock()
	if ok {
		return nil
	}
	unpacked, err := img.IsUnpacked(ctx, r.cfg.Snapshotter)
	if err != nil {
		return fmt.Errorf("containerd: image %s: %w", img.Name(), err)
	}
	if !unpacked {
		if err := img.Unpack(ctx, r.cfg.Snapshotter); err != nil {
			return fmt.Errorf("containerd: unpack %s: %w", img.Name(), err)
		}
	}
	r.setUnpacked(img.Name())
	return nil
}

func (r *Runtime) resolver() docker.ResolverOptions {
	plain := func(host string) (bool, error) {
		if ok, err := docker.MatchLocalhost(host); ok || err != nil {
			return ok, err
		}
		return slices.Contains(r.cfg.PlainHTTPRegistries, host), nil
	}
	return docker.ResolverOptions{Hosts: docker.ConfigureDefaultRegistries(docker.WithPlainHTTP(plain))}
}

// ImportArchive imports the images of an OCI (or Docker) image archive, as
// written by dataplane/ociimage, unpacks them, and returns their names. It is
// how images reach a node that reaches no registry (`lpctl image load`).
//
// An archive that cannot be read as one (not a tar, no index or manifest, cut short) or that
// names no image is an error wrapping runtimeapi.ErrInvalidImageArchive; containerd being
// unavailable, or ctx ending, is not.
func (r *Runtime) ImportArchive(ctx context.Context, archive io.Reader) ([]string, error) {
	imgs, err := r.client.Import(ctx, archive)
	if err != nil {
		if ctx.Err() != nil || errdefs.IsUnavailable(err) || errdefs.IsCanceled(err) || errdefs.IsDeadlineExceeded(err) {
			return nil, fmt.Errorf("containerd: import: %w", err)
		}
		return nil, fmt.Errorf("containerd: import: %w: %w", runtimeapi.ErrInvalidImageArchive, err)
	}
	var names []string
	for _, i := range imgs {
		if err := r.ensureUnpacked(ctx, client.NewImage(r.client, i)); err != nil {
			return names, err
		}
		names = append(names, i.Name)
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("containerd: import: %w: the archive names no image", runtimeapi.ErrInvalidImageArchive)
	}
	return names, nil
}

func (r *Runtime) getImage(ctx context.Context, ref string) (client.Image, error) {
	name, err := NormalizeImage(ref)
	if err != nil {
		return nil, err
	}
	img, err := r.client.GetImage(ctx, name)
	if err != nil {
		return nil, notFound("image", name, err)
	}
	return img, nil
}
