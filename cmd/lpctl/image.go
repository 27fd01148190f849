package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/logplane/logplane/dataplane/containerd"
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
	image.AddCommand(load)
	return image
}
