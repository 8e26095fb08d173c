package peerstore

import (
	"math"
	"time"

	"github.com/peerlink/peerlink/metrics"
)

// HistoryConfig sets how fast a History forgets. One config is shared by
// all the records of a manager, and must not change once in use.
type HistoryConfig struct {
	// RTTHalfLife is the time over which a round-trip sample loses half
	// its weight in the RTT average, and over which the peak closes half
	// its distance to that average. Zero means 10 s.
	RTTHalfLife time.Duration
	// ErrorHalfLife is the time over which the decayed error count
	// halves. Zero means 10 min.
	ErrorHalfLife time.Duration
}

const (
	defaultRTTHalfLife   = 10 * time.Second
	defaultErrorHalfLife = 10 * time.Minute
)

// DefaultHistoryConfig returns the config a History uses when given none.
func DefaultHistoryConfig() HistoryConfig {
	return HistoryConfig{RTTHalfLife: defaultRTTHalfLife, ErrorHalfLife: defaultErrorHalfLife}
}

// History is the per-peer account that survives link replacement: round
// trips, errors and successes, and the links themselves. Every method
// takes the current time. The zero value is ready to use, with
// DefaultHistoryConfig. A History is not safe for concurrent use.
type History struct {
	cfg *HistoryConfig // shared by all records; nil means the defaults

	// Round trips. rttMean is the mean of the samples weighted by
	// 2^(−age/RTTHalfLife), kept as the mean and the total weight: unlike
	// a plain EWMA it starts unbiased at the first sample and lets
	// samples taken at the same instant count alike.
	rttMean    float64 // nanoseconds
	rttWeight  float64
	rttPeak    float64 // nanoseconds, as of rttAt
	rttMin     time.Duration
	rttLast    time.Duration
	rttSamples uint32 // saturating
	// succRate is the successes decayed to successAt, as errRate; a
	// float32 beside rttSamples keeps a record within its size budget
	// (TestSizes).
	succRate float32
	rttAt    stamp

	errRate   float64 // errors decayed to errAt
	errAt     stamp   // also the last error
	errors    uint64
	successes uint64
	successAt stamp

	links          uint32
	open           uint32        // links open now: a replacement opens before the old link closes
	connectedAt    stamp         // when open last went from 0 to 1
	disconnectedAt stamp         // when open last went from 1 to 0
	connectedFor   time.Duration // over the closed spells
	bytesIn        uint64
	bytesOut       uint64
	streams        uint64
}

// Init readies h for use with cfg, discarding anything recorded. A nil
// cfg means DefaultHistoryConfig, as does a zero field of cfg.
func (h *History) Init(cfg *HistoryConfig) {
	*h = History{cfg: cfg}
}

func (h *History) rttHalfLife() time.Duration {
	if h.cfg != nil && h.cfg.RTTHalfLife > 0 {
		return h.cfg.RTTHalfLife
	}
	return defaultRTTHalfLife
}

func (h *History) errorHalfLife() time.Duration {
	if h.cfg != nil && h.cfg.ErrorHalfLife > 0 {
		return h.cfg.ErrorHalfLife
	}
	return defaultErrorHalfLife
}

// decay returns the weight left after elapsed: 2^(−elapsed/halfLife).
var decay = metrics.Decay

// ObserveRTT records a round-trip sample. A negative rtt is ignored.
//
// Besides the time-weighted mean, it keeps a peak in the manner of
// Finagle's peak EWMA: a sample above the peak raises it at once, and
// otherwise the peak falls back toward the mean with the same half-life,
// so a peer that has just been slow is shunned at once and forgiven
// gradually.
func (h *History) ObserveRTT(rtt time.Duration, now time.Time) {
	if rtt < 0 {
		return
	}
	n := stampOf(now)
	sample := float64(rtt)
	if h.rttSamples == 0 {
		h.rttMean, h.rttWeight, h.rttPeak = sample, 1, sample
		h.rttMin = rtt
	} else {
		w := decay(n.sub(h.rttAt), h.rttHalfLife())
		h.rttWeight = h.rttWeight*w + 1
		h.rttMean += (sample - h.rttMean) / h.rttWeight
		if sample >= h.rttPeak {
			h.rttPeak = sample
		} else {
			h.rttPeak = h.rttMean + (h.rttPeak-h.rttMean)*w
		}
		h.rttMin = min(h.rttMin, rtt)
	}
	h.rttLast = rtt
	if h.rttSamples < math.MaxUint32 {
		h.rttSamples++
	}
	h.rttAt = max(h.rttAt, n)
}

// RecordError counts an error: a failed dial, probe or request. The
// decayed count goes up by one and halves every ErrorHalfLife.
func (h *History) RecordError(now time.Time) {
	n := stampOf(now)
	h.errRate = h.errRate*decay(n.sub(h.errAt), h.errorHalfLife()) + 1
	h.errAt = max(h.errAt, n)
	h.errors++
}

// RecordSuccess counts a success, the counterpart of RecordError.
func (h *History) RecordSuccess(now time.Time) {
	n := stampOf(now)
	h.succRate = float32(float64(h.succRate)*decay(n.sub(h.successAt), h.errorHalfLife()) + 1)
	h.successes++
	h.successAt = max(h.successAt, n)
}

// LinkOpened records that a link to the peer opened. Every link after the
// first is a reconnect, a replacement included.
func (h *History) LinkOpened(now time.Time) {
	if h.links < math.MaxUint32 {
		h.links++
	}
	if h.open == 0 {
		h.connectedAt = stampOf(now)
	}
	h.open++
}

// LinkClosed records that a link opened by LinkOpened closed, having
// carried bytesIn and bytesOut and opened streams streams. The peer's
// connected time runs while any of its links is open.
func (h *History) LinkClosed(now time.Time, bytesIn, bytesOut, streams uint64) {
	h.bytesIn += bytesIn
	h.bytesOut += bytesOut
	h.streams += streams
	if h.open == 0 { // unpaired: keep the figures, there is no spell to end
		return
	}
	h.open--
	if h.open == 0 {
		n := stampOf(now)
		h.connectedFor += n.sub(h.connectedAt)
		h.disconnectedAt = n
	}
}

// RTTStats describes a peer's round trips.
type RTTStats struct {
	EWMA         time.Duration // mean weighted by 2^(−age/RTTHalfLife)
	Peak         time.Duration // as of the snapshot: falls toward EWMA between samples too
	Min          time.Duration
	Last         time.Duration
	Samples      uint64
	LastObserved time.Time // when Last was taken; the zero Time if no sample was
}

// HistorySnapshot is a History's figures at one instant.
type HistorySnapshot struct {
	RTT RTTStats

	// ErrorRate is the decayed error count: each error counts one when
	// recorded, and half as much every ErrorHalfLife after.
	ErrorRate   float64
	SuccessRate float64 // the decayed count of successes, as ErrorRate
	Errors      uint64  // total
	Successes   uint64  // total
	LastError   time.Time
	LastSuccess time.Time

	Links      uint64 // links opened
	Reconnects uint64 // links opened after the first
	Connected  bool   // a link is open
	// ConnectedFor is the total time the peer has had a link, the
	// current spell included.
	ConnectedFor     time.Duration
	LastConnected    time.Time // when the latest spell with a link began
	LastDisconnected time.Time // when the peer was last left without a link
	BytesIn          uint64    // over closed links
	BytesOut         uint64    // over closed links
	Streams          uint64    // over closed links
}

// Snapshot returns h's figures as of now.
func (h *History) Snapshot(now time.Time) HistorySnapshot {
	n := stampOf(now)
	s := HistorySnapshot{
		ErrorRate:        h.errRate * decay(n.sub(h.errAt), h.errorHalfLife()),
		SuccessRate:      float64(h.succRate) * decay(n.sub(h.successAt), h.errorHalfLife()),
		Errors:           h.errors,
		Successes:        h.successes,
		LastError:        h.errAt.time(),
		LastSuccess:      h.successAt.time(),
		Links:            uint64(h.links),
		Connected:        h.open > 0,
		ConnectedFor:     h.connectedFor,
		LastConnected:    h.connectedAt.time(),
		LastDisconnected: h.disconnectedAt.time(),
		BytesIn:          h.bytesIn,
		BytesOut:         h.bytesOut,
		Streams:          h.streams,
	}
	if h.links > 1 {
		s.Reconnects = uint64(h.links - 1)
	}
	if h.open > 0 {
		s.ConnectedFor += n.sub(h.connectedAt)
	}
	if h.rttSamples > 0 {
		w := decay(n.sub(h.rttAt), h.rttHalfLife())
		s.RTT = RTTStats{
			EWMA:         time.Duration(math.Round(h.rttMean)),
			Peak:         time.Duration(math.Round(h.rttMean + (h.rttPeak-h.rttMean)*w)),
			Min:          h.rttMin,
			Last:         h.rttLast,
			Samples:      uint64(h.rttSamples),
			LastObserved: h.rttAt.time(),
		}
	}
	return s
}
