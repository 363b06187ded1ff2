package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"net/url"
	"time"

	"github.com/exewall/exewall/engine"
)

// ErrStreamEnded is yielded when the daemon ends a followed stream: it
// stopped, or this reader fell too far behind.
var ErrStreamEnded = errors.New("the daemon ended the stream (it stopped, or this reader fell too far behind)")

// Violations yields the denied and audited attempts the daemon keeps whose
// time is at or after since (zero: all), oldest first. With follow it then
// yields each new one as it happens, until ctx is done (the sequence then
// ends without an error) or the daemon ends the stream (ErrStreamEnded).
// An error is yielded once, last: the errors of the package documentation,
// or one reading the stream.
func (c *Client) Violations(ctx context.Context, since time.Time, follow bool) iter.Seq2[engine.Violation, error] {
	return func(yield func(engine.Violation, error) bool) {
		q := url.Values{}
		if !since.IsZero() {
			q.Set("since", since.UTC().Format(time.RFC3339Nano))
		}
		if follow {
			q.Set("follow", "1")
		}
		resp, err := c.send(ctx, "GET", "/v1/violations?"+q.Encode(), nil)
		if err != nil {
			yield(engine.Violation{}, err)
			return
		}
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var v engine.Violation
			if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
				yield(v, fmt.Errorf("read violation: %w", err))
				return
			}
			if !yield(v, nil) {
				return
			}
		}
		switch {
		case ctx.Err() != nil:
		case sc.Err() != nil:
			yield(engine.Violation{}, fmt.Errorf("read violations: %w", sc.Err()))
		case follow:
			yield(engine.Violation{}, ErrStreamEnded)
		}
	}
}
