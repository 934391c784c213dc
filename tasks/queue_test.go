package tasks_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/hookd/hookd/tasks"
	"github.com/hookd/hookd/tasks/guard"
	"github.com/hookd/hookd/tasks/taskstest"
)

// queueRedisDB is the Redis database of the Queue's tests.
const queueRedisDB = 9

func TestShards(t *testing.T) {
	t.Parallel()
	one := tasks.QueueConfig{}.WithDefaults()
	if got := one.DeliveryQueues(); !slices.Equal(got, []string{"deliveries", "deliveries_overflow"}) {
		t.Errorf("one shard: queues %v, want deliveries and its overflow", got)
	}
	six := tasks.QueueConfig{Shards: 6}.WithDefaults()
	want := []string{"deliveries", "deliveries-1", "deliveries-2", "deliveries-3", "deliveries-4", "deliveries-5",
		"deliveries_overflow", "deliveries-1_overflow", "deliveries-2_overflow", "deliveries-3_overflow", "deliveries-4_overflow", "deliveries-5_overflow"}
	if got := six.DeliveryQueues(); !slices.Equal(got, want) {
		t.Errorf("six shards: queues %v, want %v", got, want)
	}
	// Endpoints spread over every shard, each always to the same one.
	seen := map[int]int{}
	for i := range 600 {
		ep := fmt.Sprintf("ep_%d", i)
		s := six.Shard(ep)
		if s < 0 || s >= 6 || six.Shard(ep) != s {
			t.Fatalf("endpoint %s: shard %d, then %d", ep, s, six.Shard(ep))
		}
		if one.Shard(ep) != 0 {
			t.Fatalf("endpoint %s: shard %d of one", ep, one.Shard(ep))
		}
		seen[s]++
	}
	for s := range 6 {
		if seen[s] < 50 {
			t.Errorf("shard %d got %d of 600 endpoints", s, seen[s])
		}
	}
}

// TestShardedQueue enqueues deliveries over three shards: each lands in
// its endpoint's shard, where DeliveryTasks finds it, and ArchiveDelivery
// archives it there.
func TestShardedQueue(t *testing.T) {
	t.Parallel()
	rdb := taskstest.Redis(t, queueRedisDB)
	prefix := "shardtest" + t.Name()
	taskstest.DeleteKeys(t, rdb, "asynq:{"+prefix+"*", "hookd:{app_"+prefix+"}*")
	cfg := tasks.QueueConfig{Events: prefix + ":events", Deliveries: prefix + ":deliveries", Shards: 3}
	q := tasks.NewQueue(rdb, guard.New(rdb, guard.Config{}), cfg)
	cfg = cfg.WithDefaults()
	var ps []tasks.DeliverPayload
	var refs []tasks.TaskRef
	for i := range 30 {
		p := tasks.DeliverPayload{DeliveryID: fmt.Sprintf("dlv_%s_%d", prefix, i), EventID: "evt_1", AppID: "app_" + prefix, EndpointID: fmt.Sprintf("ep_%d", i)}
		ps = append(ps, p)
		refs = append(refs, tasks.TaskRef{DeliveryID: p.DeliveryID, EndpointID: p.EndpointID})
	}
	if n, err := q.EnqueueDeliveries(t.Context(), ps); err != nil || n != len(ps) {
		t.Fatalf("enqueue: %d, %v", n, err)
	}
	infos, err := q.DeliveryTasks(t.Context(), refs)
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{}
	for i, info := range infos {
		want := cfg.DeliveryQueue(cfg.Shard(ps[i].EndpointID), false)
		if info == nil || info.Queue != want {
			t.Fatalf("delivery %d: task %+v, want one in %s", i, info, want)
		}
		used[info.Queue] = true
	}
	if len(used) != 3 {
		t.Errorf("30 endpoints used queues %v, want all 3 shards", used)
	}
	// Looked up with another endpoint (another shard), a task is not found.
	other := tasks.TaskRef{DeliveryID: refs[0].DeliveryID}
	for i := 1; cfg.Shard(other.EndpointID) == cfg.Shard(ps[0].EndpointID); i++ {
		other.EndpointID = fmt.Sprintf("elsewhere_%d", i)
	}
	if infos, err := q.DeliveryTasks(t.Context(), []tasks.TaskRef{other}); err != nil || infos[0] != nil {
		t.Errorf("lookup in another shard: %+v, %v; want none", infos[0], err)
	}
	if err := q.DeleteTasks(t.Context(), infos); err != nil {
		t.Fatal(err)
	}
	if err := q.ArchiveDelivery(t.Context(), ps[1]); err != nil {
		t.Fatal(err)
	}
	infos, err = q.DeliveryTasks(t.Context(), refs[1:2])
	if err != nil || infos[0] == nil || infos[0].State != asynq.TaskStateArchived || infos[0].Queue != cfg.DeliveryQueue(cfg.Shard(ps[1].EndpointID), false) {
		t.Errorf("archived dead letter: %+v, %v", infos[0], err)
	}
}
