package cronjob

import (
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
	batchv1 "k8s.io/api/batch/v1"
)

// missed says how many schedules a CronJob missed: none, a few, or many (more than 100, where
// Kubernetes records TooManyMissedTimes, and still starts the most recent one).
type missed int

const (
	noneMissed missed = iota
	fewMissed
	manyMissed
)

// parseSchedule parses spec.schedule in spec.timeZone, as Kubernetes' formatSchedule and
// cron.ParseStandard (which knows the @hourly-style macros).
func parseSchedule(cj *batchv1.CronJob) (cron.Schedule, error) {
	spec := cj.Spec.Schedule
	if cj.Spec.TimeZone != nil && !strings.Contains(spec, "TZ=") {
		if _, err := time.LoadLocation(*cj.Spec.TimeZone); err != nil {
			return nil, fmt.Errorf("unknown time zone %s: %w", *cj.Spec.TimeZone, err)
		}
		spec = fmt.Sprintf("TZ=%s %s", *cj.Spec.TimeZone, spec)
	}
	return cron.ParseStandard(spec)
}

// mostRecentScheduleTime is Kubernetes' mostRecentScheduleTime: the earliest time to look
// from (the last schedule, else the creation, no earlier than startingDeadlineSeconds ago when
// includeDeadline), the most recent schedule time not after now (nil if none), and how many
// were missed.
func mostRecentScheduleTime(cj *batchv1.CronJob, now time.Time, sched cron.Schedule, includeDeadline bool) (time.Time, *time.Time, missed) {
	earliest := cj.CreationTimestamp.Time
	if cj.Status.LastScheduleTime != nil {
		earliest = cj.Status.LastScheduleTime.Time
	}
	if includeDeadline && cj.Spec.StartingDeadlineSeconds != nil {
		if deadline := now.Add(-time.Duration(*cj.Spec.StartingDeadlineSeconds) * time.Second); deadline.After(earliest) {
			earliest = deadline
		}
	}
	t1 := sched.Next(earliest)
	t2 := sched.Next(t1)
	if now.Before(t1) {
		return earliest, nil, noneMissed
	}
	if now.Before(t2) {
		return earliest, &t1, fewMissed
	}
	// Many: jump by the interval between the first two, then walk to the last one not after
	// now (schedules with irregular intervals land on an earlier time and walk from there).
	interval := t2.Sub(t1)
	if interval <= 0 {
		return earliest, &t1, fewMissed
	}
	n := int64(now.Sub(t1) / interval)
	most := t1
	if n > 1 {
		jump := t1.Add(time.Duration(n-1) * interval)
		// The jump must land on or before a schedule not after now: back off a little, then
		// walk forward.
		if cand := sched.Next(jump.Add(-time.Second)); !cand.After(now) {
			most = cand
		}
	}
	for next := sched.Next(most); !next.After(now); next = sched.Next(most) {
		most = next
	}
	m := fewMissed
	if n > 100 {
		m = manyMissed
	}
	return earliest, &most, m
}

// nextScheduleTimeDuration is how long until the schedule after the most recent one (or the
// first), plus 100ms as Kubernetes adds.
func nextScheduleTimeDuration(cj *batchv1.CronJob, now time.Time, sched cron.Schedule) time.Duration {
	earliest, most, _ := mostRecentScheduleTime(cj, now, sched, false)
	var next time.Time
	if most == nil {
		next = sched.Next(earliest)
	} else {
		next = sched.Next(*most)
	}
	if next.IsZero() {
		return 0
	}
	return max(next.Sub(now), 0) + 100*time.Millisecond
}

// jobName is the name of the Job of a scheduled time: the CronJob's name and the time in
// minutes since the epoch.
func jobName(cj *batchv1.CronJob, scheduled time.Time) string {
	return fmt.Sprintf("%s-%d", cj.Name, scheduled.Unix()/60)
}
