package job_test

import (
	"fmt"
	"os"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/logplane/logplane/reconcilers/job"
	"github.com/logplane/logplane/reconcilers/reconcilerstest"
)

func TestMain(m *testing.M) {
	reconcilerstest.MaybeRunProcess()
	os.Exit(m.Run())
}

// Two reconcile processes (the second started once the Job runs, so that it knows the Job only
// from the log), and the one reconciling the Job is killed with SIGKILL in the middle of it.
// The other takes the Job over and finishes it: exactly 30 succeeded, one per Succeeded pod,
// and every pod that did not succeed (a pod too many, created by the killed process while its
// creations were in flight, and deleted) counted as failed, none twice.
func TestKillReconcileProcessMidJob(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two reconcile processes")
	}
	c := reconcilerstest.Start(t, reconcilerstest.Options{Listen: true, NoReconcilers: true, NoScheduler: true,
		Nodes: 1, NodeOptions: reconcilerstest.NodeOptions{Exit: exits}})
	w := watchPods(c, "many")
	procs := []*reconcilerstest.Process{
		reconcilerstest.StartProcess(t, c.LogURL(), "r1", reconcilerstest.ProcessOptions{Creds: c.ReconcilerCredentials(t)}),
	}
	c.MustApply(`
apiVersion: batch/v1
kind: Job
metadata:
  name: many
spec:
  completions: 30
  parallelism: 3
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: work
        image: done
`)
	c.Eventually(30*time.Second, func() (bool, string) {
		j := getJob(t, c, "many")
		return j.Status.Succeeded >= 3, fmt.Sprintf("status %+v", j.Status)
	})
	procs = append(procs, reconcilerstest.StartProcess(t, c.LogURL(), "r2", reconcilerstest.ProcessOptions{Creds: c.ReconcilerCredentials(t)}))
	c.Eventually(30*time.Second, func() (bool, string) {
		a, b := procs[0].Stats().Owned, procs[1].Stats().Owned
		return a+b == 64 && a > 0 && b > 0, fmt.Sprint(a, b)
	})
	var victim *reconcilerstest.Process
	c.Eventually(30*time.Second, func() (bool, string) {
		for _, p := range procs {
			if st := p.Stats(); st.Keys[job.Name] > 0 && getJob(t, c, "many").Status.Succeeded < 30 {
				victim = p
				return true, ""
			}
		}
		return false, "no process reconciles the Job"
	})
	t.Logf("killing %s at %+v", victim.Stats().Holder, getJob(t, c, "many").Status)
	victim.Kill()
	j := waitCondition(t, c, "many", batchv1.JobComplete, "")
	succeeded := 0
	for _, p := range c.Pods("default", "job-name=many") {
		if p.Status.Phase == corev1.PodSucceeded {
			succeeded++
		}
	}
	created, _ := w.counts()
	if j.Status.Succeeded != 30 || succeeded != 30 || int(j.Status.Failed) != created-30 {
		t.Errorf("status %+v; %d Succeeded pods of %d created", j.Status, succeeded, created)
	}
}
