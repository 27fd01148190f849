package cronjob

import (
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func TestMostRecentScheduleTime(t *testing.T) {
	created := time.Date(2026, 12, 6, 10, 0, 30, 0, time.UTC)
	tests := []struct {
		name       string
		schedule   string
		tz         *string
		last       *time.Time
		deadline   *int64
		now        time.Time
		want       *time.Time
		wantMissed missed
	}{
		{name: "before the first", schedule: "*/5 * * * *", now: created.Add(time.Minute), wantMissed: noneMissed},
		{name: "one due", schedule: "*/5 * * * *", now: created.Add(5 * time.Minute), want: ptr.To(created.Add(4*time.Minute + 30*time.Second)), wantMissed: fewMissed},
		{name: "a few missed: the latest", schedule: "@hourly", now: created.Add(3*time.Hour + 10*time.Minute), want: ptr.To(time.Date(2026, 12, 6, 13, 0, 0, 0, time.UTC)), wantMissed: fewMissed},
		{name: "a year of minutes: the latest, many", schedule: "* * * * *", now: created.Add(365 * 24 * time.Hour),
			want: ptr.To(created.Add(365*24*time.Hour - 30*time.Second)), wantMissed: manyMissed},
		{name: "irregular months", schedule: "0 0 31 * *", now: time.Date(2028, 3, 15, 0, 0, 0, 0, time.UTC), want: ptr.To(time.Date(2028, 1, 31, 0, 0, 0, 0, time.UTC)), wantMissed: fewMissed},
		{name: "from the last schedule", schedule: "@hourly", last: ptr.To(time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)), now: time.Date(2026, 12, 6, 12, 30, 0, 0, time.UTC), wantMissed: noneMissed},
		{name: "deadline moves the earliest", schedule: "*/10 * * * *", deadline: ptr.To[int64](60), now: created.Add(time.Hour + 5*time.Minute), wantMissed: noneMissed},
		{name: "time zone", schedule: "0 9 * * *", tz: ptr.To("Asia/Tokyo"), now: time.Date(2026, 12, 7, 0, 30, 0, 0, time.UTC), want: ptr.To(time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)), wantMissed: fewMissed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cj := &batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{CreationTimestamp: metav1.NewTime(created)},
				Spec: batchv1.CronJobSpec{Schedule: tt.schedule, TimeZone: tt.tz, StartingDeadlineSeconds: tt.deadline}}
			if tt.last != nil {
				cj.Status.LastScheduleTime = &metav1.Time{Time: *tt.last}
			}
			sched, err := parseSchedule(cj)
			if err != nil {
				t.Fatal(err)
			}
			_, got, m := mostRecentScheduleTime(cj, tt.now, sched, true)
			if (got == nil) != (tt.want == nil) || (got != nil && !got.Equal(*tt.want)) || m != tt.wantMissed {
				t.Errorf("got %v (%d), want %v (%d)", got, m, tt.want, tt.wantMissed)
			}
		})
	}
}

func TestParseScheduleRejects(t *testing.T) {
	for _, cj := range []*batchv1.CronJob{
		{Spec: batchv1.CronJobSpec{Schedule: "* * *"}},
		{Spec: batchv1.CronJobSpec{Schedule: "@hourly", TimeZone: ptr.To("Mars/Olympus")}},
	} {
		if _, err := parseSchedule(cj); err == nil {
			t.Errorf("%+v parsed", cj.Spec)
		}
	}
}
