package engine

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync/atomic"
)

// Logs are log/slog records. Each has a category (the part of vkp that
// wrote it) and an event id (what happened), the keys of log sampling
// (--sampler random: the config's RandomProbabilisticSampler.Rules, as
// VKProxy reads them) and of the README's list:
//
//	Vkp.Access   1 request             the access log: one line per request
//	Vkp.Proxy    2 request failed      an error answer vkp made (502, 504, 413, ...)
//	             3 bad request         a request fasthttp could not read
//	Vkp.Mirror  10 mirror failures     copies that failed, at most once a second
//	            11 mirror destination down / 12 back
//	            13 mirror stopped      the counters at shutdown
//	            14 mirror send panicked
//	Vkp.Health  20 destination down / 21 destination up
//	Vkp.Config  30 reload applied / 31 reload rejected / 32 config warning
//	            33 config watch error
//	            34 config directory event (debug) / 35 config file missing
//	               for now (debug)
//	Vkp.Cache   40 cache store failed
//	Vkp.Server  50 listening / 51 shutting down / 52 stopped / 53 server failed
//
// Sampling decides before anything is formatted: the access log asks the
// sampler before it builds its line (a dropped line costs nothing), other
// lines are dropped by the handler before the formatter sees them.

// Log categories.
const (
	CatAccess = "Vkp.Access"
	CatProxy  = "Vkp.Proxy"
	CatMirror = "Vkp.Mirror"
	CatHealth = "Vkp.Health"
	CatConfig = "Vkp.Config"
	CatCache  = "Vkp.Cache"
	CatServer = "Vkp.Server"
)

// Event ids.
const (
	EvAccess = 1
)

// eventIDs maps a log message to its event id.
var eventIDs = map[string]int{
	"request":         1,
	"request failed":  2,
	"bad request":     3,
	"mirror failures": 10,
	"mirror destination down for this route: its copies are dropped until a probe succeeds": 11,
	"mirror destination back": 12,
	"mirror stopped":          13,
	"mirror send panicked":    14,
	"destination down":        20,
	"destination up":          21,
	"reload applied":          30,
	"reload rejected":         31,
	"reload rejected: the running config keeps serving": 31,
	"config warning":                              32,
	"config watch error":                          33,
	"config watch failed; SIGHUP still reloads":   33,
	"config directory event":                      34,
	"config file missing for now; waiting for it": 35,
	"cache store failed":                          40,
	"listening":                                   50,
	"shutting down":                               51,
	"stopped":                                     52,
	"server failed":                               53,
	"admin listening":                             54,
	"grace period over; closing remaining connections": 51,
}

// Sampling modes (--sampler).
const (
	SampleNone   = iota // every line
	SampleRandom        // RandomProbabilisticSampler.Rules
	SampleTrace         // a request's lines only when its traceparent is sampled
)

// LogRule is one of RandomProbabilisticSampler.Rules.
type LogRule struct {
	Category    string     // at most one '*'; without one, a prefix; empty: any
	Level       slog.Level // the highest level the rule applies to
	HasLevel    bool
	EventID     int
	HasEvent    bool
	Probability float64 // of keeping a line, 0 to 1
}

// Sampler decides which log lines are written. Its rules change with the
// config (Engine.Apply); deciding allocates nothing.
type Sampler struct {
	mode  int
	rules atomic.Pointer[[]LogRule]
	// Float64 replaces the random source (tests).
	Float64 func() float64
}

// NewSampler returns a sampler for a --sampler mode.
func NewSampler(mode int) *Sampler {
	s := &Sampler{mode: mode, Float64: rand.Float64}
	s.rules.Store(&[]LogRule{})
	return s
}

// Mode is the sampler's mode.
func (s *Sampler) Mode() int {
	if s == nil {
		return SampleNone
	}
	return s.mode
}

// SetRules installs the rules of a config.
func (s *Sampler) SetRules(rules []LogRule) {
	if s != nil {
		s.rules.Store(&rules)
	}
}

// Keep reports whether a line of this category, level and event is
// written (random mode; the other modes keep it here).
func (s *Sampler) Keep(category string, level slog.Level, event int) bool {
	if s == nil || s.mode != SampleRandom {
		return true
	}
	r := selectRule(*s.rules.Load(), category, level, event)
	if r == nil {
		return true
	}
	switch {
	case r.Probability >= 1:
		return true
	case r.Probability <= 0:
		return false
	}
	return s.Float64() < r.Probability
}

// selectRule picks the rule that applies to a line, as Microsoft's
// LogSamplingRuleSelector does: a rule whose LogLevel is below the line's,
// or whose EventId differs, does not apply; of those whose category
// matches, the longest category wins, then one with a LogLevel (the lower),
// then one with an EventId; on a tie the later rule wins. nil: none
// applies (the line is kept).
func selectRule(rules []LogRule, category string, level slog.Level, event int) *LogRule {
	var best *LogRule
	for i := range rules {
		r := &rules[i]
		if r.HasLevel && level > r.Level || r.HasEvent && r.EventID != event || !categoryMatch(r.Category, category) {
			continue
		}
		if best == nil || !ruleBefore(r, best) {
			best = r
		}
	}
	return best
}

// ruleBefore reports whether a ranks strictly below b.
func ruleBefore(a, b *LogRule) bool {
	if len(a.Category) != len(b.Category) {
		return len(a.Category) < len(b.Category)
	}
	if a.HasLevel != b.HasLevel {
		return !a.HasLevel
	}
	if a.HasLevel && a.Level != b.Level {
		return a.Level > b.Level
	}
	if a.HasEvent != b.HasEvent {
		return !a.HasEvent
	}
	return false
}

// categoryMatch matches a rule's category (a prefix, or prefix*suffix)
// against a line's, ignoring case.
func categoryMatch(pattern, category string) bool {
	prefix, suffix, star := strings.Cut(pattern, "*")
	if !star {
		return len(category) >= len(prefix) && strings.EqualFold(category[:len(prefix)], prefix)
	}
	return len(category) >= len(prefix)+len(suffix) &&
		strings.EqualFold(category[:len(prefix)], prefix) && strings.EqualFold(category[len(category)-len(suffix):], suffix)
}

// dotnetLevels are the LogLevel names of the sampler rules, in slog
// levels (Trace below Debug, Critical above Error).
var dotnetLevels = map[string]slog.Level{
	"trace": slog.LevelDebug - 4, "debug": slog.LevelDebug, "information": slog.LevelInfo,
	"warning": slog.LevelWarn, "error": slog.LevelError, "critical": slog.LevelError + 4, "none": slog.LevelError + 8,
}

// presampled marks records the sampler has already kept (the access log
// asks before building its line): the handler must not draw again.
type presampledKey struct{}

var presampled = context.WithValue(context.Background(), presampledKey{}, true)

// SamplingHandler applies a Sampler to the records of the handler it wraps:
// a dropped record never reaches the formatter. The category is the
// logger's "category" attribute (slog.Logger.With); the event id is looked
// up from the message and added to kept records.
type SamplingHandler struct {
	next     slog.Handler
	s        *Sampler
	category string
}

// NewSamplingHandler wraps next.
func NewSamplingHandler(next slog.Handler, s *Sampler) *SamplingHandler {
	return &SamplingHandler{next: next, s: s}
}

func (h *SamplingHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h *SamplingHandler) Handle(ctx context.Context, r slog.Record) error {
	ev := eventIDs[r.Message]
	if ctx.Value(presampledKey{}) == nil && !h.s.Keep(h.category, r.Level, ev) {
		return nil
	}
	if ev != 0 {
		r.AddAttrs(slog.Int("event_id", ev))
	}
	return h.next.Handle(ctx, r)
}

func (h *SamplingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	for _, a := range as {
		if a.Key == "category" {
			c.category = a.Value.String()
		}
	}
	c.next = h.next.WithAttrs(as)
	return &c
}

func (h *SamplingHandler) WithGroup(name string) slog.Handler {
	c := *h
	c.next = h.next.WithGroup(name)
	return &c
}
