package registry

import (
	"context"
	"fmt"
	"time"

	"github.com/uptrace/bun"
)

// Kinds of EndpointChange.
const (
	// ChangeFailing: the endpoint's failing streak began (its first failed
	// attempt since its last success, its creation or its re-enabling).
	ChangeFailing = "failing"
	// ChangeRecovered: a success ended the endpoint's failing streak.
	ChangeRecovered = "recovered"
	// ChangeDisabled: the endpoint was disabled, by its health (410 Gone,
	// a failing streak longer than Config.DisableAfter) or by the API.
	ChangeDisabled = "disabled"
	// ChangeEnabled: the API enabled the disabled endpoint again.
	ChangeEnabled = "enabled"
)

// EndpointChange is a change of an endpoint's state.
type EndpointChange struct {
	Kind       string
	AppID      string
	EndpointID string
	// Manual tells a change the API made from one hookd made.
	Manual bool
	// Reason is, for ChangeFailing, what the failed attempt got; for
	// ChangeDisabled, the endpoint's disabled_reason.
	Reason string
	// FailingSince began the failing streak that the change starts, ends
	// or disables (nil when none ran).
	FailingSince *time.Time
	// At is when the change was made.
	At time.Time
}

// EndpointChangeFunc hears a change of an endpoint's state inside the
// transaction that makes it, before it commits: what it writes with tx
// commits with the change or not at all, and its error rolls the change
// back.
type EndpointChangeFunc func(ctx context.Context, tx bun.Tx, c EndpointChange) error

// changed tells Config.EndpointChanged, if set, of c.
func (r *Registry) changed(ctx context.Context, tx bun.Tx, c EndpointChange) error {
	if r.cfg.EndpointChanged == nil {
		return nil
	}
	if err := r.cfg.EndpointChanged(ctx, tx, c); err != nil {
		return fmt.Errorf("endpoint %s %s: %w", c.EndpointID, c.Kind, err)
	}
	return nil
}
