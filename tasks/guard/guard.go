// Package guard decides when a delivery may be sent, for every worker at
// once, with its state in Redis: an endpoint's rate limit (RateLimiter), and
// behind one Enter/Leave pair its circuit breaker, the in-flight slots of
// its endpoint and of its app, the waiting rooms of deliveries that found
// no free slot, and the backlogs that route deliveries to the overflow
// queue.
//
// It knows nothing of asynq, HTTP or Postgres: a delivery is a Ticket, and
// a waiter that Leave wakes is handed back to the caller to requeue.
//
// A slot is a lease: the process that was admitted renews its delivery's
// slots until it leaves (see hold.go), so a live delivery keeps them however
// slow it is, and those of a process that died lapse one lease later.
package guard

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Defaults of Config.
const (
	// DefaultPerEndpoint is how many deliveries to one endpoint may be in
	// flight at once.
	DefaultPerEndpoint = 10
	// DefaultPerApp is how many deliveries of one app may be in flight at
	// once, whatever its endpoints: what a tenant's slow or hanging
	// endpoints can hold of the workers.
	DefaultPerApp = 20
	// DefaultSlotTTL bounds how long a live delivery keeps its slots
	// without giving them back: its process stops renewing them then.
	DefaultSlotTTL = 2 * time.Minute
	// DefaultSlotLease is how long a slot outlasts its last renewal: the
	// slots of a worker that died (and those held for a woken waiter whose
	// task never asks for them) come back within it.
	DefaultSlotLease = 6 * time.Second
	// DefaultThreshold is how many consecutive failures open a circuit.
	DefaultThreshold = 10
	// DefaultCooldown is how long a circuit stays open before a probe.
	DefaultCooldown = 30 * time.Second
	// DefaultProbeTimeout bounds how long a probe holds a half-open
	// circuit.
	DefaultProbeTimeout = time.Minute
	// DefaultPark is how long the first PerEndpoint deliveries of a waiting
	// room (those the next free slots serve) wait before they ask again,
	// should no wake reach them: after a worker died holding slots, nobody
	// gives them back, and they lapse unannounced (DefaultSlotLease).
	DefaultPark = 5 * time.Second
	// DefaultParkStep is what each further PerEndpoint deliveries ahead in
	// the room add to the wait.
	DefaultParkStep = 30 * time.Second
	// DefaultParkMax caps that wait for deliveries far back in a room.
	DefaultParkMax = 10 * time.Minute
	// DefaultBacklog is how many unfinished deliveries an endpoint (or an
	// app) may have before new ones go to the overflow queue.
	DefaultBacklog = 1000
)

// Keys that nothing refreshes vanish after these.
const (
	circuitTTL = 24 * time.Hour
	roomTTL    = time.Hour
	backlogTTL = time.Hour
	// wakeScan is how many of an app's waiting endpoints one Leave looks
	// at for a waiter whose endpoint has a free slot.
	wakeScan = 8
	// wakeMost is how many waiters one Leave wakes at most: one in the
	// stead of the delivery leaving, more while its app has free slots
	// that woke nobody when they lapsed.
	wakeMost = 4
)

// Config tunes a Gate. Zero values take the defaults.
type Config struct {
	// PerEndpoint caps the deliveries to one endpoint in flight at once.
	PerEndpoint int
	// PerApp caps the deliveries of one app in flight at once.
	PerApp int
	// SlotTTL is how long an admitted delivery's process renews its
	// slots unless it gives them back first; it must exceed a delivery
	// attempt.
	SlotTTL time.Duration
	// SlotLease is how long a slot lasts after its last renewal, and a
	// slot held for a woken waiter until the waiter takes it over: what a
	// dead worker's slots stay taken. The admitted delivery's process
	// renews it every third of it. It is at most SlotTTL.
	SlotLease time.Duration
	// Threshold is how many consecutive failed attempts open a circuit.
	Threshold int
	// Cooldown is how long an open circuit holds deliveries; a failed
	// probe opens it again for as long.
	Cooldown time.Duration
	// ProbeTimeout bounds how long a probe holds a half-open circuit; it
	// must exceed a delivery attempt.
	ProbeTimeout time.Duration
	// Park is how long the first PerEndpoint waiters of a room are
	// postponed; each further PerEndpoint waiters ahead of a delivery add
	// ParkStep, up to ParkMax. Wakes normally come first: these bound the
	// wait of a waiter whose wake was lost (a worker killed between its
	// attempt and the wake, or holding slots that lapsed).
	Park     time.Duration
	ParkStep time.Duration
	ParkMax  time.Duration
	// Backlog is the overflow threshold of Route.
	Backlog int
}

func (c Config) withDefaults() Config {
	c.PerEndpoint = cmp.Or(c.PerEndpoint, DefaultPerEndpoint)
	c.PerApp = cmp.Or(c.PerApp, DefaultPerApp)
	c.SlotTTL = cmp.Or(c.SlotTTL, DefaultSlotTTL)
	c.SlotLease = min(cmp.Or(c.SlotLease, DefaultSlotLease), c.SlotTTL)
	c.Threshold = cmp.Or(c.Threshold, DefaultThreshold)
	c.Cooldown = cmp.Or(c.Cooldown, DefaultCooldown)
	c.ProbeTimeout = cmp.Or(c.ProbeTimeout, DefaultProbeTimeout)
	c.Park = cmp.Or(c.Park, DefaultPark)
	c.ParkStep = cmp.Or(c.ParkStep, DefaultParkStep)
	c.ParkMax = max(cmp.Or(c.ParkMax, DefaultParkMax), c.Park)
	c.Backlog = cmp.Or(c.Backlog, DefaultBacklog)
	return c
}

// Ticket is one delivery asking to be sent.
type Ticket struct {
	AppID      string
	EndpointID string
	DeliveryID string
	// Queue is where the delivery's task waits when it is postponed: a
	// wake looks for it there.
	Queue string
	// NoRoom: a delivery that finds no free slot does not wait in a room
	// (it has no task to wake yet).
	NoRoom bool
}

// Waiter returns t as a waiter whose held slots Forgo gives up.
func (t Ticket) Waiter() Waiter {
	return Waiter{AppID: t.AppID, EndpointID: t.EndpointID, DeliveryID: t.DeliveryID, Queue: t.Queue}
}

// Waiter is a postponed delivery that a Leave woke: one slot of its
// endpoint and of its app are held for it, for a SlotLease, and its task
// must be made due now (or the hold given up with Forgo).
type Waiter struct {
	AppID      string
	EndpointID string
	DeliveryID string
	Queue      string
}

// Reasons a delivery is postponed.
const (
	ReasonCircuitOpen  = "circuit_open"
	ReasonEndpointBusy = "endpoint_busy"
	ReasonAppBusy      = "app_busy"
)

// Verdict is what Enter decided.
type Verdict struct {
	// Wait is how long the delivery is postponed; zero admits it.
	Wait time.Duration
	// Reason says why it is postponed.
	Reason string
	// Probe tells that the admitted delivery tests a half-open circuit.
	Probe bool
	// Parked tells that the delivery waits in its endpoint's room for a
	// wake (endpoint or app busy), Wait being only a bound.
	Parked bool
	// Released tells that the delivery gave up slots held for it by a
	// wake: the caller passes them on with Forgo.
	Released bool
}

// Outcome is what became of an admitted delivery.
type Outcome struct {
	// Sent: a request went out, and OK tells whether it succeeded; the
	// circuit counts it.
	Sent, OK bool
	// Finished: the delivery will not be tried again; it leaves the
	// backlogs.
	Finished bool
}

// Gate is the shared admission of deliveries. Each process has its own:
// it renews the slots of the deliveries it admitted.
type Gate struct {
	rdb                         redis.Cmdable
	enter, leave, finish, renew *redis.Script
	cfg                         Config

	mu    sync.Mutex
	holds map[holder]*hold // admitted tickets not yet settled
}

// New returns a Gate keeping its state in rdb.
func New(rdb redis.Cmdable, cfg Config) *Gate {
	return &Gate{
		rdb: rdb, cfg: cfg.withDefaults(),
		enter: redis.NewScript(enterScript), leave: redis.NewScript(leaveScript), finish: redis.NewScript(finishScript),
		renew: redis.NewScript(renewScript),
		holds: map[holder]*hold{},
	}
}

// Config returns the gate's configuration, defaults applied.
func (g *Gate) Config() Config { return g.cfg }

// prefix starts every key of an app's guard state. The app's ID is the
// hash tag, so that one script's keys share a Redis Cluster slot.
func prefix(appID string) string { return "hookd:{" + appID + "}:" }

// member is a waiter's entry in its endpoint's room: its queue and ID.
func member(queue, deliveryID string) string { return queue + "\n" + deliveryID }

// Enter asks, in one round trip, whether t may be sent now: its endpoint's
// circuit must let it through and a slot of its endpoint and of its app
// must be free (or held for it by a wake). A delivery that finds no free
// slot waits in its endpoint's room, to be woken by a Leave. The slots of
// an admitted delivery are renewed until its Leave.
func (g *Gate) Enter(ctx context.Context, t Ticket) (Verdict, error) {
	p := prefix(t.AppID)
	keys := []string{
		p + "circuit:" + t.EndpointID, p + "probe:" + t.EndpointID, p + "slots:" + t.EndpointID,
		p + "slots", p + "room:" + t.EndpointID, p + "rooms",
	}
	res, err := g.enter.Run(ctx, g.rdb, keys,
		t.DeliveryID, member(t.Queue, t.DeliveryID), g.cfg.PerEndpoint, g.cfg.PerApp,
		g.cfg.SlotLease.Milliseconds(), g.cfg.ProbeTimeout.Milliseconds(), g.cfg.Cooldown.Milliseconds(),
		t.EndpointID, g.cfg.Park.Milliseconds(), g.cfg.ParkMax.Milliseconds(), roomTTL.Milliseconds(), flag(t.NoRoom),
		g.cfg.ParkStep.Milliseconds(),
	).Int64Slice()
	if err != nil {
		return Verdict{}, fmt.Errorf("gate delivery %s: %w", t.DeliveryID, err)
	}
	if len(res) != 3 {
		return Verdict{}, fmt.Errorf("gate delivery %s: unexpected reply %v", t.DeliveryID, res)
	}
	switch res[0] {
	case 0:
		g.hold(ctx, t)
		return Verdict{Probe: res[1] == 1}, nil
	case 1:
		return Verdict{Wait: time.Duration(res[1]) * time.Millisecond, Reason: ReasonCircuitOpen, Released: res[2] > 0}, nil
	case 2:
		return Verdict{Wait: time.Duration(res[1]) * time.Millisecond, Reason: ReasonEndpointBusy, Parked: !t.NoRoom, Released: res[2] > 0}, nil
	default:
		return Verdict{Wait: time.Duration(res[1]) * time.Millisecond, Reason: ReasonAppBusy, Parked: !t.NoRoom, Released: res[2] > 0}, nil
	}
}

// Leave tells the gate what became of t, admitted by Enter, in one round
// trip: its slots are given back, its circuit counts the attempt, a
// finished delivery leaves the backlogs, and the first waiter that can
// now be sent (of t's endpoint, else of another endpoint of t's app) is
// woken, and more of the app's waiters while its app has free slots (a
// dead worker's slots lapse without waking anyone), up to wakeMost. They
// are returned with slots held for them.
func (g *Gate) Leave(ctx context.Context, t Ticket, o Outcome) ([]Waiter, error) {
	// No renewal may follow the slots' release.
	g.unhold(t)
	p := prefix(t.AppID)
	keys := []string{
		p + "circuit:" + t.EndpointID, p + "probe:" + t.EndpointID, p + "slots:" + t.EndpointID,
		p + "slots", p + "rooms", p + "backlog:" + t.EndpointID, p + "backlog",
	}
	res, err := g.leave.Run(ctx, g.rdb, keys,
		t.DeliveryID, flag(o.Sent), flag(o.OK), flag(o.Finished), g.cfg.Threshold, g.cfg.Cooldown.Milliseconds(),
		circuitTTL.Milliseconds(), g.cfg.PerEndpoint, g.cfg.PerApp, g.cfg.SlotLease.Milliseconds(),
		t.EndpointID, p, wakeScan, roomTTL.Milliseconds(), wakeMost,
	).StringSlice()
	switch {
	case errors.Is(err, redis.Nil):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("settle delivery %s: %w", t.DeliveryID, err)
	case len(res) == 0 || len(res)%2 != 0 || len(res) > 2*wakeMost:
		return nil, fmt.Errorf("settle delivery %s: unexpected reply %v", t.DeliveryID, res)
	}
	ws := make([]Waiter, 0, len(res)/2)
	for i := 0; i < len(res); i += 2 {
		queue, id, ok := strings.Cut(res[i+1], "\n")
		if !ok {
			return nil, fmt.Errorf("settle delivery %s: malformed waiter %q", t.DeliveryID, res[i+1])
		}
		ws = append(ws, Waiter{AppID: t.AppID, EndpointID: res[i], DeliveryID: id, Queue: queue})
	}
	return ws, nil
}

// Forgo gives up the slots a wake held for w (its task could not be made
// due: it is running, or gone) and wakes the next waiters in its stead,
// as Leave does.
func (g *Gate) Forgo(ctx context.Context, w Waiter) ([]Waiter, error) {
	return g.Leave(ctx, Ticket{AppID: w.AppID, EndpointID: w.EndpointID, DeliveryID: w.DeliveryID, Queue: w.Queue}, Outcome{})
}

// Finished takes a delivery that never reached Enter (its endpoint is
// gone or disabled) off the backlogs.
func (g *Gate) Finished(ctx context.Context, appID, endpointID string) error {
	p := prefix(appID)
	if err := g.finish.Run(ctx, g.rdb, []string{p + "backlog:" + endpointID, p + "backlog"}).Err(); err != nil {
		return fmt.Errorf("count backlog of endpoint %s: %w", endpointID, err)
	}
	return nil
}

// Route counts deliveries about to be enqueued (by app, then endpoint)
// into the backlogs and returns the endpoints whose new deliveries go to
// the overflow queue: those with more than Backlog unfinished deliveries,
// and those with more than PerEndpoint whose app has more than Backlog.
// So a flood waits behind the deliveries of quiet endpoints and apps, and
// an app's quiet endpoints stay in the main queue beside its flood.
func (g *Gate) Route(ctx context.Context, counts map[string]map[string]int) (map[string]bool, error) {
	type counter struct{ app, endpoint *redis.IntCmd }
	pipe := g.rdb.Pipeline()
	cmds := map[string]map[string]counter{}
	for app, eps := range counts {
		p := prefix(app)
		total := 0
		for _, n := range eps {
			total += n
		}
		appCmd := pipe.IncrBy(ctx, p+"backlog", int64(total))
		pipe.Expire(ctx, p+"backlog", backlogTTL)
		cmds[app] = map[string]counter{}
		for ep, n := range eps {
			cmds[app][ep] = counter{appCmd, pipe.IncrBy(ctx, p+"backlog:"+ep, int64(n))}
			pipe.Expire(ctx, p+"backlog:"+ep, backlogTTL)
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("count backlogs: %w", err)
	}
	over := map[string]bool{}
	limit := int64(g.cfg.Backlog)
	for _, eps := range cmds {
		for ep, c := range eps {
			n := c.endpoint.Val()
			if n > limit || c.app.Val() > limit && n > int64(g.cfg.PerEndpoint) {
				over[ep] = true
			}
		}
	}
	return over, nil
}

func flag(b bool) string {
	if b {
		return "1"
	}
	return "0"
}
