package api

import (
	"cmp"
	"context"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/hookd/hookd/app/resource"
	"github.com/hookd/hookd/tasks"
	"github.com/hookd/hookd/tasks/ledger"
)

// EndpointRecoverer sends endpoints the events they missed (tasks/recovery).
type EndpointRecoverer interface {
	Start(ctx context.Context, appID, endpointID string, since, until time.Time, r ledger.Replay) (ledger.Recovery, error)
	Create(ctx context.Context, appID, endpointID string, since, until time.Time, r ledger.Replay) (ledger.Recovery, error)
	Run(ctx context.Context, job *ledger.Recovery) error
	Continue(ctx context.Context, job ledger.Recovery) error
	Job(ctx context.Context, id string) (ledger.Recovery, error)
}

type recoverInput struct {
	EndpointPath
	Body struct {
		Since time.Time `json:"since" doc:"Recover the events committed at or after this time (RFC 3339); events committed before the endpoint was created are never sent to it."`
		Until time.Time `json:"until,omitzero" required:"false" doc:"Recover the events committed before this time (RFC 3339); by default, and at the latest, the time of the request: later events are the endpoint's by the usual way."`
		ReplaySteering
	}
}

type recoveryPath struct {
	EndpointPath
	RecoveryID string `path:"recovery_id" pattern:"^rcv_[0-9a-z]{26}$" doc:"Recovery ID."`
}

func (s *Server) registerRecoveries(api huma.API) {
	tags := []string{"Endpoints"}
	const base = "/v1/apps/{app_id}/endpoints/{endpoint_id}"
	huma.Register(api, withErrors(huma.Operation{
		OperationID: "recover-endpoint", Method: http.MethodPost, Path: base + "/recover", Tags: tags,
		Summary: "Recover an endpoint's missed events",
		Description: "Starts a background job that sends the endpoint every event of the types it subscribes to (and that its filter " +
			"accepts) committed from since until until, after the endpoint was created, that it has not received: events it " +
			"has a dead letter of are retried, events it has no delivery of (published while it was disabled, say) are " +
			"delivered; events it received, or whose delivery is still pending, are not sent again. Follow the job with " +
			"GET .../recoveries/{recovery_id}. rate paces it (events a second); dry_run counts what it would send, in " +
			"recovered, and sends nothing: a dry run is answered completed unless counting takes more than a few seconds. " +
			"409 when the endpoint is disabled (enable it first; a dry run is allowed), or when 4 bulk retries and recoveries of the app are running. Events older than HOOKD_EVENT_RETENTION " +
			"are deleted, and cannot be recovered.",
		DefaultStatus: http.StatusAccepted, Security: bearer(), MaxBodyBytes: maxBodyBytes,
	}), func(ctx context.Context, in *recoverInput) (*acceptedOutput[ledger.Recovery], error) {
		b := in.Body
		err := cmp.Or(resource.FilterTime("since", b.Since), resource.FilterTime("until", b.Until))
		if err == nil && !b.Until.IsZero() && !b.Until.After(b.Since) {
			err = resource.Invalid("until", "must be later than since")
		}
		if err != nil {
			return nil, s.fail(ctx, err)
		}
		ep, err := s.registry.Endpoint(ctx, in.AppID, in.EndpointID)
		if err != nil {
			return nil, s.fail(ctx, err)
		}
		if ep.Disabled && !b.DryRun {
			return nil, newProblem(http.StatusConflict, "conflict", "the endpoint is disabled: enable it, then recover it")
		}
		var job ledger.Recovery
		if b.DryRun {
			job, err = s.cfg.Recoveries.Create(ctx, in.AppID, in.EndpointID, b.Since, b.Until, b.replay())
			if err == nil {
				err = tasks.CountNow(ctx, tasks.DryRunWait, func(ctx context.Context) error { return s.cfg.Recoveries.Run(ctx, &job) },
					func(ctx context.Context) error { return s.cfg.Recoveries.Continue(ctx, job) })
			}
		} else {
			job, err = s.cfg.Recoveries.Start(ctx, in.AppID, in.EndpointID, b.Since, b.Until, b.replay())
		}
		if err != nil {
			return nil, s.fail(ctx, err)
		}
		return &acceptedOutput[ledger.Recovery]{Body: job}, nil
	})
	huma.Register(api, withErrors(huma.Operation{
		OperationID: "get-endpoint-recovery", Method: http.MethodGet, Path: base + "/recoveries/{recovery_id}", Tags: tags,
		Summary: "Follow a recovery", Description: "status is running until every event of the range was examined.",
		Security: bearer(),
	}), func(ctx context.Context, in *recoveryPath) (*bodyOutput[ledger.Recovery], error) {
		job, err := s.cfg.Recoveries.Job(ctx, in.RecoveryID)
		if err == nil && (job.AppID != in.AppID || job.EndpointID != in.EndpointID) {
			err = resource.ErrNotFound
		}
		if err != nil {
			return nil, s.fail(ctx, err)
		}
		return body(job), nil
	})
}
