//go:build windows

package windows

import (
	"context"
	"errors"
	"fmt"

	"github.com/tailscale/wf"

	"github.com/exewall/exewall/windows/internal/wfptxn"
)

// Reset implements engine.Resetter: in one transaction it deletes every
// filter of exewall's provider, its sublayer and the provider. Only
// exewall's own objects are listed, so whatever else is installed cannot
// make it fail.
func (b *Backend) Reset(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	err := wfptxn.Do(b.sess, func() error {
		fs, err := b.ourFilters()
		if err != nil {
			return err
		}
		for _, f := range fs {
			if err := b.sess.DeleteRule(wf.RuleID(f.Key)); err != nil {
				return fmt.Errorf("delete filter %q: %w", f.Name, err)
			}
		}
		hasProv, hasSub, err := b.objects()
		if err != nil {
			return err
		}
		if hasSub {
			if err := b.sess.DeleteSublayer(sublayerID); err != nil {
				return fmt.Errorf("delete wfp sublayer: %w", err)
			}
		}
		if hasProv {
			if err := b.sess.DeleteProvider(providerID); err != nil {
				return fmt.Errorf("delete wfp provider: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("reset wfp: %w", err)
	}
	b.policy = nil
	b.ev.Lock()
	b.byID, b.prevByID = nil, nil
	b.ev.Unlock()
	return nil
}

// Reset removes exewall's filters, sublayer and provider whatever else is
// installed; no daemon needs to run.
func Reset(ctx context.Context, cfg Config) error {
	b, err := New(ctx, cfg)
	if err != nil {
		return err
	}
	rerr := b.Reset(ctx)
	return errors.Join(rerr, b.Close())
}
