package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// rootCACommand is a stand-in for Kubernetes' root CA publisher until logplane has one: it creates
// the kube-root-ca.crt ConfigMap (the cluster CA, from the kubeconfig) in every namespace when the
// namespace appears, which every test of the suite waits for before it starts. It does no more
// than that (no restoring after a delete or an update), so the suite's test of the publisher
// itself still fails.
func rootCACommand(args []string) error {
	fs := flag.NewFlagSet("rootca", flag.ContinueOnError)
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig of the cluster")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		return err
	}
	ca := cfg.CAData
	if len(ca) == 0 && cfg.CAFile != "" {
		if ca, err = os.ReadFile(cfg.CAFile); err != nil {
			return err
		}
	}
	if len(ca) == 0 {
		return errors.New("rootca: the kubeconfig names no certificate authority")
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	for ctx.Err() == nil {
		if err := publish(ctx, cs, string(ca)); err != nil && ctx.Err() == nil {
			log.Printf("rootca: %v; again in a second", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
	return nil
}

// publish lists the namespaces, fills in what is missing, then watches for new ones until the
// watch ends.
func publish(ctx context.Context, cs kubernetes.Interface, ca string) error {
	list, err := cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for _, ns := range list.Items {
		ensure(ctx, cs, ns.Name, ca)
	}
	w, err := cs.CoreV1().Namespaces().Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion})
	if err != nil {
		return err
	}
	defer w.Stop()
	for ev := range w.ResultChan() {
		switch ev.Type {
		case watch.Added:
			if ns, ok := ev.Object.(*corev1.Namespace); ok {
				ensure(ctx, cs, ns.Name, ca)
			}
		case watch.Error:
			return fmt.Errorf("watch: %v", apierrors.FromObject(ev.Object))
		}
	}
	return nil
}

func ensure(ctx context.Context, cs kubernetes.Interface, ns, ca string) {
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "kube-root-ca.crt", Annotations: map[string]string{
			"kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. " +
				"No other usage is guaranteed across distributions of Kubernetes clusters.",
		}},
		Data: map[string]string{"ca.crt": ca},
	}
	_, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{})
	switch {
	case err == nil:
		log.Printf("rootca: created %s/kube-root-ca.crt", ns)
	case apierrors.IsAlreadyExists(err), apierrors.IsNotFound(err), apierrors.IsForbidden(err):
		// there already, or the namespace is gone or terminating
	default:
		log.Printf("rootca: %s: %v", ns, err)
	}
}
