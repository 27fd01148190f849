package builtin

import (
	batchv1 "k8s.io/api/batch/v1"

	"github.com/logplane/logplane/defaults"
	"github.com/logplane/logplane/kinds"
	"github.com/logplane/logplane/printers"
	"github.com/logplane/logplane/validation"
)

// cronJob is batch/v1 CronJob.
func cronJob() *kinds.Kind {
	return &kinds.Kind{
		GroupVersionKind: gvk("batch", "v1", "CronJob"), Resource: "cronjobs", Singular: "cronjob", ShortNames: []string{"cj"},
		Categories: all, Namespaced: true, Subresources: []string{"status"},
		Strategy: kinds.Typed[*batchv1.CronJob]{
			Default:              defaults.CronJob,
			Validate:             validation.CronJob,
			ValidateUpdate:       validation.CronJobUpdate,
			ValidateStatusUpdate: validation.MetadataUpdate[*batchv1.CronJob],
			Table:                printers.CronJobTable,
		}.Strategy(),
	}
}
