package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// A FIFO endpoint's deliveries are sent by its pump: one TypeFIFO task at
// a time, which sends the endpoint's head delivery (ledger.FIFOHead), then
// the next, and hands over to a successor when it must wait (a retry's
// pause, a rate limit, an earlier event still fanning out) or has run its
// share. Postgres holds the queue; Redis holds, per endpoint, a hash that
// says whether a pump is under way:
//
//   - "gen" numbers the pumps: the pump whose number it holds is the one
//     that may send; any other (a duplicate, one handed over from) stops
//     at once. The pump of generation g is task fifo:<endpoint>:<g>. It
//     only grows (from the time the hash was made, in milliseconds), so
//     no pump's task ID is ever used twice: a new pump never collides
//     with an old one that asynq still holds.
//   - "running" is 1 while a pump is under way.
//   - "kicks" counts the fan-outs that wrote deliveries for the endpoint.
//     A kick that finds no pump running starts one; the others leave the
//     work to the pump under way.
//
// A pump that finds no head stops (running 0) only if no kick came since
// it last looked: a delivery written meanwhile is seen by its next look.
// A stopped pump's hash expires after fifoIdleTTL. Should Redis lose the
// hash or the pump's task, or the pump's worker die, the reconciler starts
// a pump again (Queue.RestartPump).

// TypeFIFO sends the deliveries of one FIFO endpoint, in order.
const TypeFIFO = "webhook:fifo"

// FIFOPayload is the payload of a TypeFIFO task: the endpoint, and the
// pump's generation.
type FIFOPayload struct {
	EndpointID string `json:"endpoint_id"`
	AppID      string `json:"app_id"`
	Gen        int64  `json:"gen"`
}

// Pump is what a running pump knows of its endpoint's hash.
type Pump struct {
	// Current tells that the pump is its endpoint's: another took over
	// otherwise, and it must stop.
	Current bool
	// Kicks is the count of kicks the pump has seen.
	Kicks int64
}

// fifoKey is the hash of endpointID's pump.
func fifoKey(endpointID string) string { return "hookd:fifo:" + endpointID }

// fifoTaskID is the ID of the pump of generation gen.
func fifoTaskID(endpointID string, gen int64) string {
	return "fifo:" + endpointID + ":" + strconv.FormatInt(gen, 10)
}

// kickScript counts a kick and starts a generation when no pump runs.
// KEYS: the hash. ARGV: the time in milliseconds (the first generation of
// a new hash), the idle TTL. Returns the new generation, or 0 when a pump
// is under way.
const kickScript = `
redis.call('HINCRBY', KEYS[1], 'kicks', 1)
if redis.call('HGET', KEYS[1], 'running') == '1' then return 0 end
redis.call('PERSIST', KEYS[1])
redis.call('HSET', KEYS[1], 'running', 1)
if redis.call('HSETNX', KEYS[1], 'gen', ARGV[1]) == 1 then return tonumber(ARGV[1]) end
return redis.call('HINCRBY', KEYS[1], 'gen', 1)
`

// releaseScript stops the pumps if the pump is current and saw every
// kick. KEYS: the hash. ARGV: the generation, the kicks seen, the idle
// TTL in seconds. Returns 1 when stopped.
const releaseScript = `
local h = redis.call('HMGET', KEYS[1], 'gen', 'kicks')
if h[1] ~= ARGV[1] or (h[2] or '0') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'running', 0)
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
`

// handOverScript moves the hash to the next generation, if the pump is
// current. KEYS: the hash. ARGV: the generation. Returns the next
// generation, or 0.
const handOverScript = `
if redis.call('HGET', KEYS[1], 'gen') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'running', 1)
return redis.call('HINCRBY', KEYS[1], 'gen', 1)
`

// fifoIdleTTL is how long the hash of an endpoint whose pump stopped is
// kept: its generation goes on from where it was if a kick comes sooner.
const fifoIdleTTL = 24 * time.Hour

// fifoScripts are the pump's scripts, loaded once per Queue.
type fifoScripts struct {
	kick, release, handOver *redis.Script
}

func newFIFOScripts() fifoScripts {
	return fifoScripts{redis.NewScript(kickScript), redis.NewScript(releaseScript), redis.NewScript(handOverScript)}
}

// pumpQueue is the queue of endpointID's pump: its shard's delivery queue.
func (q *Queue) pumpQueue(endpointID string) string {
	return q.cfg.DeliveryQueue(q.cfg.Shard(endpointID), false)
}

// Kick tells the pumps of the FIFO endpoints endpointIDs of app appID
// that deliveries were written for them, and starts those not under way.
// The fan-out kicks after its deliveries are committed.
func (q *Queue) Kick(ctx context.Context, endpointIDs []string, appID string) error {
	return inParallel(ctx, len(endpointIDs), func(ctx context.Context, i int) error {
		ep := endpointIDs[i]
		gen, err := q.fifo.kick.Run(ctx, q.rdb, []string{fifoKey(ep)}, time.Now().UnixMilli()).Int64()
		if err != nil {
			return fmt.Errorf("kick fifo pump of %s: %w", ep, err)
		}
		if gen == 0 {
			return nil
		}
		return q.enqueuePump(ctx, FIFOPayload{EndpointID: ep, AppID: appID, Gen: gen}, 0)
	})
}

// enqueuePump enqueues the pump p, due after pause.
func (q *Queue) enqueuePump(ctx context.Context, p FIFOPayload, pause time.Duration) error {
	payload, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("encode fifo pump: %w", err)
	}
	id := fifoTaskID(p.EndpointID, p.Gen)
	opts := []asynq.Option{
		asynq.TaskID(id), asynq.Queue(q.pumpQueue(p.EndpointID)),
		// A pump fails only with Postgres or Redis, and its successor is
		// its own retry: it must not be archived.
		asynq.MaxRetry(fanoutMaxRetry),
		asynq.Timeout(FIFOPumpTimeout(q.cfg.DeliverTimeout)),
	}
	if pause > 0 {
		opts = append(opts, asynq.ProcessIn(pause))
	}
	_, err = q.enqueueAll(ctx, []idTask{{id, asynq.NewTask(TypeFIFO, payload, opts...)}})
	return err
}

// FIFOPumpRun bounds the time one pump sends before it hands over, so
// that the endpoints of a shard take turns on the workers.
const FIFOPumpRun = 5 * time.Second

// FIFOPumpTimeout bounds one pump task: its run, and the delivery under
// way at its end.
func FIFOPumpTimeout(deliverTimeout time.Duration) time.Duration {
	return FIFOPumpRun + deliverTimeout
}

// LookPump reads p's endpoint's hash: whether p is current, and the kicks
// so far.
func (q *Queue) LookPump(ctx context.Context, p FIFOPayload) (Pump, error) {
	h, err := q.rdb.HMGet(ctx, fifoKey(p.EndpointID), "gen", "kicks", "running").Result()
	if err != nil {
		return Pump{}, fmt.Errorf("read fifo pump of %s: %w", p.EndpointID, err)
	}
	gen, _ := h[0].(string)
	kicks, _ := h[1].(string)
	running, _ := h[2].(string)
	n, _ := strconv.ParseInt(kicks, 10, 64)
	return Pump{Current: gen == strconv.FormatInt(p.Gen, 10) && running == "1", Kicks: n}, nil
}

// ReleasePump stops p's endpoint's pumps if p is current and no kick came
// since it saw seen; it reports whether it did. Otherwise p looks again.
func (q *Queue) ReleasePump(ctx context.Context, p FIFOPayload, seen int64) (bool, error) {
	n, err := q.fifo.release.Run(ctx, q.rdb, []string{fifoKey(p.EndpointID)}, p.Gen, seen, int(fifoIdleTTL.Seconds())).Int()
	if err != nil {
		return false, fmt.Errorf("release fifo pump of %s: %w", p.EndpointID, err)
	}
	return n == 1, nil
}

// HandOver makes p's successor the current pump and enqueues it, due
// after pause. A pump no longer current hands over nothing.
func (q *Queue) HandOver(ctx context.Context, p FIFOPayload, pause time.Duration) error {
	gen, err := q.fifo.handOver.Run(ctx, q.rdb, []string{fifoKey(p.EndpointID)}, p.Gen).Int64()
	if err != nil {
		return fmt.Errorf("hand fifo pump of %s over: %w", p.EndpointID, err)
	}
	if gen == 0 {
		return nil
	}
	next := p
	next.Gen = gen
	// Should this enqueue fail, the pump's retry finds itself no longer
	// current, and the reconciler enqueues the successor.
	return q.enqueuePump(ctx, next, pause)
}

// RestartPump makes sure the FIFO endpoint endpointID of app appID has a
// pump: it kicks it when Redis holds no running pump for it (the hash
// lost, or a kick lost), enqueues the current generation's task again
// when Redis lost that, and hands over to a successor when the current
// pump's worker died (its lease expired) or an operator archived its
// task. The reconciler calls it for the FIFO endpoints with deliveries
// waiting; it reports whether a pump was started.
func (q *Queue) RestartPump(ctx context.Context, endpointID, appID string) (bool, error) {
	h, err := q.rdb.HMGet(ctx, fifoKey(endpointID), "gen", "running").Result()
	if err != nil {
		return false, fmt.Errorf("read fifo pump of %s: %w", endpointID, err)
	}
	genText, _ := h[0].(string)
	running, _ := h[1].(string)
	gen, err := strconv.ParseInt(genText, 10, 64)
	if err != nil || running != "1" {
		return true, q.Kick(ctx, []string{endpointID}, appID)
	}
	queue := q.pumpQueue(endpointID)
	id := fifoTaskID(endpointID, gen)
	p := FIFOPayload{EndpointID: endpointID, AppID: appID, Gen: gen}
	state, err := q.rdb.HGet(ctx, "asynq:{"+queue+"}:t:"+id, "state").Result()
	switch {
	case err != nil && !errors.Is(err, redis.Nil):
		return false, fmt.Errorf("look up fifo pump %s: %w", id, err)
	case state == "active":
		// A pump whose worker died stays active until its lease expires
		// and asynq's recoverer passes, a minute apart: the endpoint would
		// wait up to 90s. Once the lease has expired, a successor takes
		// over; the dead pump, should asynq run it again, is no longer
		// current and stops.
		expired, err := q.leaseExpired(ctx, queue, id)
		if err != nil || !expired {
			return false, err
		}
		return true, q.HandOver(ctx, p, 0)
	case state == "archived":
		return true, q.HandOver(ctx, p, 0)
	case state != "":
		return false, nil // due, scheduled or retrying
	}
	return true, q.enqueuePump(ctx, p, 0)
}

// leaseExpired reports whether the lease of active task id of queue has
// expired: its worker stopped extending it (asynq extends the leases of
// its running tasks every few seconds, by asynq's 30s), so it died or lost
// Redis. It knows asynq's (v0.26) lease set, as no asynq API reads it.
func (q *Queue) leaseExpired(ctx context.Context, queue, id string) (bool, error) {
	expiry, err := q.rdb.ZScore(ctx, "asynq:{"+queue+"}:lease", id).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return false, nil // between states
	case err != nil:
		return false, fmt.Errorf("read the lease of %s: %w", id, err)
	}
	return time.Unix(int64(expiry), 0).Before(time.Now()), nil
}
