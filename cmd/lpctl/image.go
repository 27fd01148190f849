package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"

	"github.com/logplane/logplane/apiserver/logplaneapi"
	"github.com/logplane/logplane/dataplane/containerd"
	"github.com/logplane/logplane/dataplane/ociimage"
)

func newImageCommand(f cmdutil.Factory, streams genericiooptions.IOStreams) *cobra.Command {
	image := &cobra.Command{Use: "image", Short: "Build demo images and load image archives into the cluster's nodes"}
	var address, namespace string
	var nodes []string
	load := &cobra.Command{
		Use:   "load FILE",
		Short: "Load an OCI image archive into the cluster's nodes, for clusters that reach no registry",
		Long: "Load an OCI (or Docker) image archive into every node of the cluster, or the nodes --node names, as " +
			"`kind load image-archive` does: the archive goes through the API server to each node agent, which imports it " +
			"into its containerd. Pods then run the images it holds (images of logplane.local/ are never pulled). " +
			"With --containerd, the archive goes straight into that containerd on this machine instead.",
		Example: "  lpctl image load hello.tar\n" +
			"  lpctl image load hello.tar --node worker-1 --node worker-2\n" +
			"  lpctl image load busybox.tar --containerd /var/lib/logplane/containerd/containerd.sock",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if address != "" {
				if len(nodes) > 0 {
					return fmt.Errorf("--node loads through the API server; --containerd loads into a containerd on this machine: give one or the other")
				}
				return loadLocal(cmd.Context(), streams.Out, args[0], address, namespace)
			}
			return loadIntoNodes(cmd.Context(), f, streams.Out, args[0], nodes)
		},
	}
	load.Flags().StringArrayVar(&nodes, "node", nil, "load into this node only (repeat for several); default: every node")
	load.Flags().StringVar(&address, "containerd", "", "load into the containerd at this socket on this machine instead, not through the API server")
	load.Flags().StringVar(&namespace, "containerd-namespace", containerd.DefaultNamespace, "with --containerd: the containerd namespace the node agent uses")
	image.AddCommand(load, newImageBuildCommand(streams))
	return image
}

// loadLocal imports the archive at path into the containerd at address.
func loadLocal(ctx context.Context, out io.Writer, path, address, namespace string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	names, err := containerd.LoadArchive(ctx, address, namespace, f)
	if err != nil {
		return err
	}
	for _, n := range names {
		fmt.Fprintf(out, "loaded %s\n", n)
	}
	return nil
}

// loadIntoNodes posts the archive at path to every node named (all of the cluster's if none),
// one after the other, and says what each loaded. It goes on after a node fails and returns
// every failure.
func loadIntoNodes(ctx context.Context, f cmdutil.Factory, out io.Writer, path string, nodes []string) error {
	if _, err := os.Stat(path); err != nil {
		return err
	}
	if len(nodes) == 0 {
		cs, err := f.KubernetesClientSet()
		if err != nil {
			return err
		}
		list, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, n := range list.Items {
			nodes = append(nodes, n.Name)
		}
		if len(nodes) == 0 {
			return fmt.Errorf("the cluster has no nodes to load %s into", path)
		}
	}
	var errs []error
	for _, node := range nodes {
		loaded, err := loadIntoNode(ctx, f, path, node)
		if err != nil {
			errs = append(errs, fmt.Errorf("node %s: %w", node, err))
			continue
		}
		for _, img := range loaded.Images {
			fmt.Fprintf(out, "loaded %s into node %s\n", img, node)
		}
	}
	return errors.Join(errs...)
}

func loadIntoNode(ctx context.Context, f cmdutil.Factory, path, node string) (logplaneapi.ImageLoad, error) {
	var loaded logplaneapi.ImageLoad
	archive, err := os.Open(path)
	if err != nil {
		return loaded, err
	}
	defer archive.Close()
	err = callJSON(ctx, f, http.MethodPost, logplaneapi.NodeImagesPath(node), nil, archive, logplaneapi.ImageArchiveType, &loaded)
	return loaded, err
}

// Demo images: what `lpctl image build` makes without a registry, from this machine's
// busybox-static and the project's hello server.
const (
	busyboxRef = "logplane.local/busybox:latest"
	helloRef   = "logplane.local/hello:latest"
)

func newImageBuildCommand(streams genericiooptions.IOStreams) *cobra.Command {
	var busybox, helloBin, ref, out string
	cmd := &cobra.Command{
		Use:   "build (busybox | hello) -o FILE",
		Short: "Build a demo image as an OCI archive, without a registry: busybox, or the hello web server",
		Long: "Build a demo image as an OCI archive, from this machine's busybox-static (Debian's package) and, for hello, " +
			"the project's hello web server (go build ./cmd/hello). Load it into a node with `lpctl image load`.",
		Example: "  lpctl image build busybox -o busybox.tar\n  lpctl image build hello --hello-binary bin/hello -o hello.tar",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return fmt.Errorf("say where to write the archive with -o FILE")
			}
			var img v1.Image
			var err error
			switch args[0] {
			case "busybox":
				img, err = ociimage.Busybox(busybox)
				if ref == "" {
					ref = busyboxRef
				}
			case "hello":
				if helloBin == "" {
					return fmt.Errorf("hello needs --hello-binary (build it with: CGO_ENABLED=0 go build -o bin/hello ./cmd/hello)")
				}
				img, err = ociimage.Hello(helloBin, busybox)
				if ref == "" {
					ref = helloRef
				}
			default:
				return fmt.Errorf("unknown demo image %q (want busybox or hello)", args[0])
			}
			if err != nil {
				return err
			}
			if err := ociimage.WriteArchive(out, ref, img); err != nil {
				return err
			}
			fmt.Fprintf(streams.Out, "wrote %s to %s\n", ref, out)
			return nil
		},
	}
	cmd.Flags().StringVar(&busybox, "busybox", ociimage.DefaultBusybox, "static busybox binary (apt-get install busybox-static)")
	cmd.Flags().StringVar(&helloBin, "hello-binary", "", "the hello web server, built statically from ./cmd/hello")
	cmd.Flags().StringVar(&ref, "tag", "", "image name (default "+busyboxRef+" or "+helloRef+")")
	cmd.Flags().StringVarP(&out, "output", "o", "", "archive to write")
	return cmd
}
