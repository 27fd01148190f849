package main

import (
	"fmt"
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/logplane/logplane/dataplane/containerd"
	"github.com/logplane/logplane/dataplane/ociimage"
)

func newImageCommand(streams genericiooptions.IOStreams) *cobra.Command {
	image := &cobra.Command{Use: "image", Short: "Manage the images of this node"}
	var address, namespace string
	load := &cobra.Command{
		Use:   "load FILE",
		Short: "Import an OCI image archive into this node's containerd, for machines that reach no registry",
		Example: "  lpctl image load hello.tar\n" +
			"  lpctl image load busybox.tar --containerd /var/lib/logplane/containerd/containerd.sock",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			names, err := containerd.LoadArchive(cmd.Context(), address, namespace, f)
			if err != nil {
				return err
			}
			for _, n := range names {
				fmt.Fprintf(streams.Out, "loaded %s\n", n)
			}
			return nil
		},
	}
	load.Flags().StringVar(&address, "containerd", containerd.DefaultAddress, "containerd socket of the node agent")
	load.Flags().StringVar(&namespace, "namespace", containerd.DefaultNamespace, "containerd namespace the node agent uses")
	image.AddCommand(load, newImageBuildCommand(streams))
	return image
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
