package health

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/peerlink/peerlink/peer"
)

// Target is one link as health checking sees it. The manager implements
// it over a link's mux session.
type Target interface {
	// Peer is the remote's ID.
	Peer() peer.ID
	// Ping sends one probe and returns its round-trip time. It must
	// return soon after ctx ends (a mux session's PingContext does).
	Ping(ctx context.Context) (time.Duration, error)
	// LastActivity is when bytes last arrived on the link. It must be
	// cheap and do no I/O: it is called for every link on every sweep.
	LastActivity() time.Time
}

// Check probes t now, bounded by cfg.Timeout (zero or negative: the
// default) and by ctx. Result.Time is when the probe was sent; Err is
// Ping's error (wrapping context.DeadlineExceeded when the timeout
// passed), or ctx's if ctx had ended before the probe.
func Check(ctx context.Context, t Target, cfg Config) Result {
	return check(ctx, t, cfg.withDefaults().Timeout, time.Now)
}

func check(ctx context.Context, t Target, timeout time.Duration, now func() time.Time) Result {
	r := Result{Peer: t.Peer(), Time: now()}
	if err := ctx.Err(); err != nil {
		r.Err = err
		return r
	}
	pctx, cancel := context.WithTimeout(ctx, timeout)
	r.RTT, r.Err = t.Ping(pctx)
	cancel()
	if r.Err != nil {
		r.RTT = 0
	} else {
		r.Healthy = true
	}
	return r
}

// CheckAll probes every target now, at most cfg.MaxInFlight at once, each
// bounded by cfg.Timeout and all by ctx, and returns their results in the
// order of targets. Fields of cfg that are zero or negative select their
// defaults. Targets not yet probed when ctx ends are not probed: their
// Err is ctx's. It returns when every probe has.
func CheckAll(ctx context.Context, targets []Target, cfg Config) []Result {
	cfg = cfg.withDefaults()
	results := make([]Result, len(targets))
	forEach(ctx, len(targets), cfg.MaxInFlight, nil, func(i int) {
		results[i] = check(ctx, targets[i], cfg.Timeout, time.Now)
	})
	return results
}

// forEach calls f(i) for i in [0, n) with at most workers calls at once:
// a pool of min(workers, n) goroutines, one of them the caller's, that
// take the next index in turn. With sem non-nil, each call also holds one
// of sem's slots while it runs (sem bounds calls across several forEach
// at once), and once ctx has ended no further slot is taken, so the
// remaining indices are not called. It returns when every call has.
func forEach(ctx context.Context, n, workers int, sem chan struct{}, f func(i int)) {
	workers = min(workers, n)
	if workers <= 0 {
		return
	}
	var next atomic.Int64
	work := func() {
		for {
			i := int(next.Add(1) - 1)
			if i >= n {
				return
			}
			if sem == nil {
				f(i)
				continue
			}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			f(i)
			<-sem
		}
	}
	var wg sync.WaitGroup
	for range workers - 1 {
		wg.Go(work)
	}
	work()
	wg.Wait()
}
