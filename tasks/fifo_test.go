package tasks_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/hookd/hookd/tasks"
	"github.com/hookd/hookd/tasks/guard"
	"github.com/hookd/hookd/tasks/taskstest"
)

// TestPumpTakesTurns walks a FIFO endpoint's pumps through Redis: the
// first kick starts one and later kicks leave the work to it; a pump that
// saw every kick stops, one that missed a kick does not; a pump handed
// over from is no longer current; a kick after a stop starts a pump whose
// task ID was never used, even while asynq still holds the stopped pump's
// task (a new pump must not collide with it); and the reconciler's restart
// starts a pump when none runs, and leaves a running one alone.
func TestPumpTakesTurns(t *testing.T) {
	t.Parallel()
	rdb := taskstest.Redis(t, queueRedisDB)
	prefix := "pumptest" + t.Name()
	ep := "ep_" + prefix
	taskstest.DeleteKeys(t, rdb, "asynq:{"+prefix+"*", "hookd:fifo:"+ep)
	cfg := tasks.QueueConfig{Events: prefix + ":events", Deliveries: prefix + ":deliveries"}
	q := tasks.NewQueue(rdb, guard.New(rdb, guard.Config{}), cfg)
	ins := asynq.NewInspectorFromRedisClient(rdb)
	ctx := t.Context()
	kick := func() {
		t.Helper()
		if err := q.Kick(ctx, []string{ep}, "app_"+prefix); err != nil {
			t.Fatal(err)
		}
	}
	pumps := func() []tasks.FIFOPayload {
		t.Helper()
		var ps []tasks.FIFOPayload
		for _, list := range []func(string, ...asynq.ListOption) ([]*asynq.TaskInfo, error){ins.ListPendingTasks, ins.ListScheduledTasks} {
			infos, err := list(prefix + ":deliveries")
			if err != nil {
				t.Fatal(err)
			}
			for _, info := range infos {
				var p tasks.FIFOPayload
				if err := json.Unmarshal(info.Payload, &p); err != nil {
					t.Fatal(err)
				}
				ps = append(ps, p)
			}
		}
		return ps
	}
	look := func(p tasks.FIFOPayload) tasks.Pump {
		t.Helper()
		pump, err := q.LookPump(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		return pump
	}

	kick()
	kick()
	first := pumps()
	if len(first) != 1 {
		t.Fatalf("two kicks enqueued %d pumps, want 1", len(first))
	}
	p1 := first[0]
	seen := look(p1)
	if !seen.Current || seen.Kicks != 2 {
		t.Fatalf("first pump: %+v, want current with 2 kicks", seen)
	}
	kick() // a delivery written after the pump looked
	if ok, err := q.ReleasePump(ctx, p1, seen.Kicks); err != nil || ok {
		t.Fatalf("release after a missed kick = %v, %v; want false", ok, err)
	}
	if ok, err := q.ReleasePump(ctx, p1, look(p1).Kicks); err != nil || !ok {
		t.Fatalf("release having seen every kick = %v, %v; want true", ok, err)
	}
	if look(p1).Current {
		t.Error("a stopped pump is still current")
	}
	// The stopped pump's task is still in asynq (as while its handler
	// returns): a kick now must start a pump of another ID.
	kick()
	ps := pumps()
	if len(ps) != 2 || ps[0].Gen == ps[1].Gen {
		t.Fatalf("after a stop and a kick: pumps %+v, want two of different generations", ps)
	}
	p2 := ps[0]
	if p2.Gen == p1.Gen {
		p2 = ps[1]
	}
	if !look(p2).Current || look(p1).Current {
		t.Error("the new pump is not the current one")
	}
	if err := q.HandOver(ctx, p2, time.Hour); err != nil {
		t.Fatal(err)
	}
	if look(p2).Current {
		t.Error("a pump handed over from is still current")
	}
	if n := len(pumps()); n != 3 {
		t.Errorf("%d pump tasks after the hand-over, want 3 (its successor scheduled)", n)
	}
	// A pump is waiting (scheduled): the reconciler leaves it alone.
	if started, err := q.RestartPump(ctx, ep, "app_"+prefix); err != nil || started {
		t.Errorf("restart with a pump scheduled = %v, %v; want false", started, err)
	}
	// Redis lost the hash: the reconciler starts a pump.
	if err := rdb.Del(ctx, "hookd:fifo:"+ep).Err(); err != nil {
		t.Fatal(err)
	}
	if started, err := q.RestartPump(ctx, ep, "app_"+prefix); err != nil || !started {
		t.Errorf("restart with the hash lost = %v, %v; want true", started, err)
	}
	if n := len(pumps()); n != 4 {
		t.Errorf("%d pump tasks after the restart, want 4", n)
	}
}
