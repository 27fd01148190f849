package containerd

import (
	"context"
	"errors"
	"fmt"
	"io"

	client "github.com/containerd/containerd"
	"github.com/containerd/containerd/namespaces"
)

// LoadArchive imports the images of an OCI (or Docker) image archive into the containerd at
// address, in namespace (DefaultNamespace if empty), unpacked for the default snapshotter, and
// returns their names. It needs no pod network: it is `lpctl image load` on a node that reaches no
// registry.
func LoadArchive(ctx context.Context, address, namespace string, archive io.Reader) ([]string, error) {
	if address == "" {
		address = DefaultAddress
	}
	if namespace == "" {
		namespace = DefaultNamespace
	}
	c, err := client.New(address)
	if err != nil {
		return nil, fmt.Errorf("containerd: connect %s: %w", address, err)
	}
	defer c.Close()
	ctx = namespaces.WithNamespace(ctx, namespace)
	imgs, err := c.Import(ctx, archive)
	if err != nil {
		return nil, fmt.Errorf("containerd: import: %w", err)
	}
	var names []string
	for _, i := range imgs {
		img := client.NewImage(c, i)
		if err := img.Unpack(ctx, DefaultSnapshotter); err != nil {
			return names, fmt.Errorf("containerd: unpack %s: %w", i.Name, err)
		}
		names = append(names, i.Name)
	}
	if len(names) == 0 {
		return nil, errors.New("containerd: import: the archive names no image")
	}
	return names, nil
}
