package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/logplane/logplane/dataplane/containerd"
	"github.com/logplane/logplane/dataplane/podnet"
)

// teardownCommand removes the pods `logplane up` leaves running when it stops (for adoption by the
// next start): every sandbox with its containers, IP and network namespace, then the containerd
// namespace. It uses the data directory's containerd, started again if it is not running, and
// stopped afterwards (run.sh kills a daemon left running with the shims). As e2e/machine_test.go's
// cleanup does.
func teardownCommand(args []string) error {
	fs := flag.NewFlagSet("teardown", flag.ContinueOnError)
	dataDir := fs.String("data-dir", "", "the cluster's --data-dir")
	bridge := fs.String("bridge", "", "the node's --bridge")
	podCIDR := fs.String("pod-cidr", "", "the node's --pod-cidr")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dataDir == "" || *bridge == "" || *podCIDR == "" {
		return errors.New("teardown: -data-dir, -bridge and -pod-cidr are required")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	own := filepath.Join(*dataDir, "containerd")
	if _, err := os.Stat(filepath.Join(own, "config.toml")); err != nil {
		return nil // no node agent ever ran
	}
	addr := filepath.Join(own, "containerd.sock")
	if containerd.Ping(ctx, addr) != nil {
		d, err := containerd.StartDaemon(ctx, containerd.DaemonConfig{Dir: own})
		if err != nil {
			return err
		}
		defer func() {
			if err := d.Stop(context.WithoutCancel(ctx)); err != nil {
				log.Printf("teardown: %v", err)
			}
		}()
		addr = d.Address
	}
	// As the agent made them on its own daemon (cmd/logplane/agent.go).
	state := containerd.StateDir(own)
	dir := filepath.Join(*dataDir, "agent")
	network, err := podnet.New(podnet.Config{StateDir: filepath.Join(dir, "net"), NetNSDir: filepath.Join(state, "netns"), Bridge: *bridge, Subnet: *podCIDR})
	if err != nil {
		return err
	}
	rt, err := containerd.New(ctx, containerd.Config{
		Address: addr, DataDir: filepath.Join(dir, "runtime"), Network: network,
		RuncRoot: filepath.Join(state, "runc"), FIFODir: filepath.Join(state, "fifo"),
	})
	if err != nil {
		return err
	}
	defer rt.Close()
	sbs, err := rt.ListSandboxes(ctx)
	errs := []error{err}
	for _, sb := range sbs {
		errs = append(errs, rt.RemoveSandbox(ctx, sb.ID))
	}
	errs = append(errs, rt.DeleteNamespace(ctx))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("teardown: removing the pods: %w", err)
	}
	log.Printf("teardown: removed %d pods", len(sbs))
	return nil
}
