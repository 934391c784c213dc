package api

import (
	"context"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/hookd/hookd/app/events"
	"github.com/hookd/hookd/app/resource"
	"github.com/hookd/hookd/tasks"
	"github.com/hookd/hookd/tasks/ledger"
)

// DeadLetterRetrier retries dead letters, one by one or in bulk
// (tasks/deadletter).
type DeadLetterRetrier interface {
	Retry(ctx context.Context, ids []string) ([]string, error)
	StartBulk(ctx context.Context, f ledger.DeadLetterFilter, r ledger.Replay) (ledger.RetryJob, error)
	CreateBulk(ctx context.Context, f ledger.DeadLetterFilter, r ledger.Replay) (ledger.RetryJob, error)
	Run(ctx context.Context, job *ledger.RetryJob) error
	Continue(ctx context.Context, job ledger.RetryJob) error
	Job(ctx context.Context, id string) (ledger.RetryJob, error)
}

// DeadLetterQuery is the filter of dead-letter lists and bulk retries.
type DeadLetterQuery struct {
	AppID      string    `query:"app_id" pattern:"^app_[0-9a-z]{26}$" doc:"Only this application's dead letters."`
	EndpointID string    `query:"endpoint_id" maxLength:"64" doc:"Only dead letters to this endpoint."`
	EventType  string    `query:"event_type" maxLength:"128" doc:"Only dead letters of events of this type."`
	Since      time.Time `query:"since" doc:"Only deliveries that failed at or after this time (RFC 3339)."`
	Until      time.Time `query:"until" doc:"Only deliveries that failed before this time (RFC 3339)."`
}

type listDeadLettersInput struct {
	DeadLetterQuery
	PageParams
}

type deadLetterPath struct {
	DeliveryID string `path:"delivery_id" pattern:"^dlv_[0-9a-z]{26}$" doc:"Delivery ID."`
}

type bulkRetryInput struct {
	Body struct {
		AppID      string    `json:"app_id,omitempty" pattern:"^app_[0-9a-z]{26}$"`
		EndpointID string    `json:"endpoint_id,omitempty" maxLength:"64"`
		EventType  string    `json:"event_type,omitempty" maxLength:"128"`
		Since      time.Time `json:"since,omitzero" doc:"Only deliveries that failed at or after this time."`
		Until      time.Time `json:"until,omitzero" doc:"Only deliveries that failed before this time."`
		ReplaySteering
	}
}

type jobPath struct {
	JobID string `path:"job_id" pattern:"^dlr_[0-9a-z]{26}$" doc:"Bulk retry ID."`
}

type acceptedOutput[T any] struct {
	Body T
}

// scopedFilter confines a dead-letter filter to the caller's application:
// an app-scoped key sees its own dead letters only, and naming another
// application is a 404.
func scopedFilter(ctx context.Context, f ledger.DeadLetterFilter) (ledger.DeadLetterFilter, error) {
	p := principalOf(ctx)
	if p.appID == "" {
		return f, nil
	}
	if f.AppID != "" && f.AppID != p.appID {
		return f, resource.ErrNotFound
	}
	f.AppID = p.appID
	return f, nil
}

func (s *Server) registerDeadLetters(api huma.API) {
	tags := []string{"Dead letters"}
	huma.Register(api, withErrors(huma.Operation{
		OperationID: "list-dead-letters", Method: http.MethodGet, Path: "/v1/dead-letters", Tags: tags,
		Summary:     "List dead letters",
		Description: "Deliveries that failed for good (retries exhausted, 410 Gone, endpoint disabled or deleted), newest first.",
		Security:    bearer(),
	}), func(ctx context.Context, in *listDeadLettersInput) (*listOutput[events.DeadLetter], error) {
		f, err := scopedFilter(ctx, ledger.DeadLetterFilter{AppID: in.AppID, EndpointID: in.EndpointID, EventType: in.EventType, Since: in.Since, Until: in.Until})
		if err != nil {
			return nil, s.fail(ctx, err)
		}
		p, err := s.events.DeadLetters(ctx, f, in.query())
		if err != nil {
			return nil, s.fail(ctx, err)
		}
		return pageOf(p), nil
	})
	huma.Register(api, withErrors(huma.Operation{
		OperationID: "retry-dead-letter", Method: http.MethodPost, Path: "/v1/dead-letters/{delivery_id}/retry", Tags: tags,
		Summary: "Retry a dead letter",
		Description: "Moves the delivery back to pending and delivers it again with a fresh retry schedule. " +
			"409 when the delivery is not a dead letter.",
		DefaultStatus: http.StatusAccepted, Security: bearer(),
	}), func(ctx context.Context, in *deadLetterPath) (*acceptedOutput[events.Delivery], error) {
		d, err := s.events.DeliveryByID(ctx, in.DeliveryID)
		if err == nil && principalOf(ctx).appID != "" && d.AppID != principalOf(ctx).appID {
			err = resource.ErrNotFound
		}
		if err != nil {
			return nil, s.fail(ctx, err)
		}
		retried, err := s.deadLetters.Retry(ctx, []string{in.DeliveryID})
		if err != nil {
			return nil, s.fail(ctx, err)
		}
		if len(retried) == 0 {
			return nil, newProblem(http.StatusConflict, "conflict", "the delivery is "+d.Status+", not a dead letter")
		}
		if d, err = s.events.Delivery(ctx, d.AppID, in.DeliveryID); err != nil {
			return nil, s.fail(ctx, err)
		}
		return &acceptedOutput[events.Delivery]{Body: d}, nil
	})
	huma.Register(api, withErrors(huma.Operation{
		OperationID: "retry-dead-letters", Method: http.MethodPost, Path: "/v1/dead-letters/retry", Tags: tags,
		Summary: "Retry dead letters in bulk",
		Description: "Starts a background job that retries every dead letter the filter selects (failed before now), " +
			"in batches; follow it with GET /v1/dead-letters/retries/{job_id}. rate paces it (dead letters a second); " +
			"dry_run counts what it would retry, in retried, and retries nothing: a dry run is answered completed " +
			"unless counting takes more than a few seconds, when it goes on in the background. 409 when 4 bulk retries and " +
			"recoveries of the filter's app are running.",
		DefaultStatus: http.StatusAccepted, Security: bearer(), MaxBodyBytes: maxBodyBytes,
	}), func(ctx context.Context, in *bulkRetryInput) (*acceptedOutput[ledger.RetryJob], error) {
		b := in.Body
		f, err := scopedFilter(ctx, ledger.DeadLetterFilter{AppID: b.AppID, EndpointID: b.EndpointID, EventType: b.EventType, Since: b.Since, Until: b.Until})
		if err == nil {
			err = events.CheckDeadLetterFilter(f)
		}
		if err != nil {
			return nil, s.fail(ctx, err)
		}
		var job ledger.RetryJob
		if b.DryRun {
			job, err = s.deadLetters.CreateBulk(ctx, f, b.replay())
			if err == nil {
				err = tasks.CountNow(ctx, tasks.DryRunWait, func(ctx context.Context) error { return s.deadLetters.Run(ctx, &job) },
					func(ctx context.Context) error { return s.deadLetters.Continue(ctx, job) })
			}
		} else {
			job, err = s.deadLetters.StartBulk(ctx, f, b.replay())
		}
		if err != nil {
			return nil, s.fail(ctx, err)
		}
		return &acceptedOutput[ledger.RetryJob]{Body: job}, nil
	})
	huma.Register(api, withErrors(huma.Operation{
		OperationID: "get-dead-letter-retry", Method: http.MethodGet, Path: "/v1/dead-letters/retries/{job_id}", Tags: tags,
		Summary: "Follow a bulk retry", Description: "status is running until every selected dead letter was retried.",
		Security: bearer(),
	}), func(ctx context.Context, in *jobPath) (*bodyOutput[ledger.RetryJob], error) {
		job, err := s.deadLetters.Job(ctx, in.JobID)
		if err == nil && principalOf(ctx).appID != "" && job.Filter.AppID != principalOf(ctx).appID {
			err = resource.ErrNotFound
		}
		if err != nil {
			return nil, s.fail(ctx, err)
		}
		return body(job), nil
	})
}
