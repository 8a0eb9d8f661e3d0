package engine

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// Health: which destinations may take requests.
//
//   - Active checks (a cluster's HealthCheck.Active): one checker per
//     cluster probes each destination every Interval (with up to 10%
//     jitter, so clusters do not probe in step), the first time as soon as
//     the checker starts, each probe on a connection of its own with a
//     User-Agent naming vkp, never on the request path. Http: the answer's
//     status is 2xx; Connect: the connection opens. Fails consecutive
//     failures put a destination down, Passes consecutive passes bring it
//     back. A destination's first result decides at once: a new instance is
//     not sent traffic before its check passes (until then it is used only
//     if no checked destination of its cluster is up), and one that fails is
//     not sent traffic for a whole interval.
//   - Passive checks (HealthCheck.Passive): real requests' outcomes over a
//     sliding DetectionWindowSize; once at least MinimalTotalCountThreshold
//     requests are in it and the share that failed on the transport
//     (connect or I/O error, timeout; an answer of any status is no failure)
//     is over FailureRateLimit, the destination is out for
//     ReactivationPeriod.
//   - State is per address (registry.go): it outlives config reloads, and
//     an address two clusters check with different settings takes the
//     latest result of either. A checker whose cluster, settings and
//     destinations are unchanged by a reload keeps running; one whose
//     settings or destinations changed is restarted (and probes at once).
//   - Every change is logged once: the destination, the cluster, the check
//     and why.

// Active states of a hostState.
const (
	activeNone    int32 = iota // no active check covers the address: up
	activeUnknown              // checked, no result yet
	activeUp
	activeDown
)

func (h *hostState) available() bool {
	return h.active.Load() != activeDown && !h.passiveDown.Load()
}

// pending reports an address whose first active check has not answered.
func (h *hostState) pending() bool { return h.active.Load() == activeUnknown }

func (h *hostState) setActive(s int32) (changed bool) {
	if h.active.Swap(s) == s {
		return false
	}
	h.gen.Add(1)
	return true
}

// checkTarget is one destination a checker probes, with its streak.
type checkTarget struct {
	d      *Destination
	hs     *hostState
	passes int
	fails  int
}

// checker runs a cluster's active health checks.
type checker struct {
	cluster string
	cfg     ActiveHealthCheck
	spec    string // what it checks: a reload with the same spec keeps it
	targets []*checkTarget
	tlsConf *tls.Config
	dialer  func(ctx context.Context, network, addr string) (net.Conn, error)
	log     *slog.Logger
	ua      string
	ctx     context.Context // canceled by close: probes in flight end
	cancel  context.CancelFunc
	done    chan struct{}
	// probe replaces the network probe (tests).
	probe func(ctx context.Context, t *checkTarget) error
}

func newChecker(cl *Cluster, cfg *ActiveHealthCheck, log *slog.Logger, ua string) *checker {
	k := &checker{cluster: cl.ID, cfg: *cfg, log: log, ua: ua, done: make(chan struct{})}
	k.ctx, k.cancel = context.WithCancel(context.Background())
	k.spec = fmt.Sprintf("%+v", *cfg)
	for _, d := range cl.dests {
		k.targets = append(k.targets, &checkTarget{d: d, hs: d.hs})
		k.spec += "|" + d.Address + "|" + d.host
	}
	if cl.cfg.InsecureSkipVerify {
		k.tlsConf = &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12} //nolint:gosec // opt-in via DangerousAcceptAnyServerCertificate
	}
	var nd net.Dialer
	k.dialer = nd.DialContext
	k.probe = k.probeNet
	return k
}

// start marks its addresses as checked and runs the checker.
func (k *checker) start() {
	for _, t := range k.targets {
		if t.hs.checkers.Add(1) == 1 {
			t.hs.setActive(activeUnknown)
		}
	}
	go k.run()
}

// close stops the checker (probes in flight are canceled) and waits for
// it. An address no checker covers any more is up again as far as active
// checks go.
func (k *checker) close() {
	k.cancel()
	<-k.done
	for _, t := range k.targets {
		if t.hs.checkers.Add(-1) == 0 {
			t.hs.setActive(activeNone)
		}
	}
}

func (k *checker) run() {
	defer close(k.done)
	t := time.NewTimer(0) // the first round at once
	defer t.Stop()
	for {
		select {
		case <-k.ctx.Done():
			return
		case <-t.C:
		}
		k.round()
		jitter := time.Duration(rand.Int64N(int64(k.cfg.Interval)/10 + 1))
		t.Reset(k.cfg.Interval - k.cfg.Interval/20 + jitter)
	}
}

// round probes every destination at once; each result is recorded as it
// comes (a destination that is slow to answer does not hold the others'
// results back), and the round ends when all have answered.
func (k *checker) round() {
	var wg sync.WaitGroup
	for _, t := range k.targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := k.probe(k.ctx, t)
			if k.ctx.Err() == nil {
				k.observe(t, err)
			}
		}()
	}
	wg.Wait()
}

// observe applies one probe result to a destination's state machine.
func (k *checker) observe(t *checkTarget, err error) {
	cur := t.hs.active.Load()
	if err == nil {
		t.fails = 0
		t.passes++
		if cur != activeUp && (cur == activeUnknown || t.passes >= k.cfg.Passes) && t.hs.setActive(activeUp) {
			k.log.Info("destination up", "cluster", k.cluster, "destination", t.d.Address, "check", "active",
				"policy", k.cfg.Policy, "passes", t.passes)
		}
		return
	}
	t.passes = 0
	t.fails++
	if cur != activeDown && (cur == activeUnknown || t.fails >= k.cfg.Fails) && t.hs.setActive(activeDown) {
		k.log.Warn("destination down", "cluster", k.cluster, "destination", t.d.Address, "check", "active",
			"policy", k.cfg.Policy, "fails", t.fails, "reason", err.Error())
	}
}

var errProbeStatus = errors.New("engine: health check answered with a status other than 2xx")

// probeNet probes one destination over a connection of its own.
func (k *checker) probeNet(parent context.Context, t *checkTarget) error {
	ctx, cancel := context.WithTimeout(parent, k.cfg.Timeout)
	defer cancel()
	a := t.d.addr
	conn, err := k.dialer(ctx, a.network, a.addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	if k.cfg.Policy == "Connect" {
		return nil
	}
	defer context.AfterFunc(ctx, func() { conn.Close() })() // a stopped checker does not wait
	deadline, _ := ctx.Deadline()
	conn.SetDeadline(deadline) //nolint:errcheck // a dead conn fails the write
	if a.tls {
		host, _, _ := splitHostPortLoose(a.addr)
		conf := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
		if k.tlsConf != nil {
			conf = k.tlsConf
		}
		tc := tls.Client(conn, conf)
		if err := tc.HandshakeContext(ctx); err != nil {
			return err
		}
		conn = tc
	}
	host := t.d.host
	if host == "" {
		host = t.d.authority
	}
	req := k.cfg.Method + " " + string(t.d.base) + k.cfg.Path
	if k.cfg.Query != "" {
		if k.cfg.Query[0] != '?' {
			req += "?"
		}
		req += k.cfg.Query
	}
	req += " HTTP/1.1\r\nHost: " + host + "\r\nUser-Agent: " + k.ua + "\r\nConnection: close\r\n\r\n"
	if _, err := conn.Write([]byte(req)); err != nil {
		return err
	}
	var h fasthttp.ResponseHeader
	br := bufio.NewReaderSize(conn, 4096)
	for range 10 { // interim answers first
		if err := h.Read(br); err != nil {
			return err
		}
		if h.StatusCode() >= 200 {
			break
		}
	}
	if st := h.StatusCode(); st < 200 || st > 299 {
		return fmt.Errorf("%w: %s %s answered %s", errProbeStatus, k.cfg.Method, k.cfg.Path, strconv.Itoa(st))
	}
	return nil
}

// passiveWindow counts a destination's request outcomes over a sliding
// window of passiveBuckets buckets.
type passiveWindow struct {
	b       [passiveBuckets]passiveBucket
	reviveT *time.Timer
	mu      sync.Mutex // guards reviveT
}

type passiveBucket struct {
	epoch         atomic.Int64
	total, failed atomic.Int64
}

const passiveBuckets = 10

// passiveCheck is a cluster's compiled HealthCheck.Passive.
type passiveCheck struct {
	cfg     PassiveHealthCheck
	cluster string
	log     *slog.Logger
	width   int64 // nanoseconds per bucket
}

// record counts one request's outcome at now (nanoseconds); a failure that
// takes the window over the limit puts the destination out until its
// reactivation.
func (p *passiveCheck) record(d *Destination, failed bool, now int64) {
	h := d.hs
	w := &h.passive
	slot := now / p.width
	b := &w.b[slot%passiveBuckets]
	if e := b.epoch.Load(); e != slot && b.epoch.CompareAndSwap(e, slot) {
		b.total.Store(0)
		b.failed.Store(0)
	}
	b.total.Add(1)
	if !failed || h.passiveDown.Load() {
		return
	}
	b.failed.Add(1)
	var total, fails int64
	for i := range w.b {
		if e := w.b[i].epoch.Load(); e > slot-passiveBuckets && e <= slot {
			total += w.b[i].total.Load()
			fails += w.b[i].failed.Load()
		}
	}
	if total < int64(p.cfg.MinimalTotalCountThreshold) || float64(fails) <= p.cfg.FailureRateLimit*float64(total) {
		return
	}
	if !h.passiveDown.CompareAndSwap(false, true) {
		return
	}
	h.gen.Add(1)
	p.log.Warn("destination down", "cluster", p.cluster, "destination", d.Address, "check", "passive",
		"failed", fails, "requests", total, "for", p.cfg.ReactivationPeriod.String())
	w.mu.Lock()
	w.reviveT = time.AfterFunc(p.cfg.ReactivationPeriod, func() {
		for i := range w.b {
			w.b[i].total.Store(0)
			w.b[i].failed.Store(0)
		}
		if h.passiveDown.CompareAndSwap(true, false) {
			h.gen.Add(1)
			p.log.Info("destination up", "cluster", p.cluster, "destination", d.Address, "check", "passive")
		}
	})
	w.mu.Unlock()
}

// transportFailure reports the request failures passive checks count: the
// destination did not answer (connect or I/O error, timeout, a malformed
// answer). The client's own failures, and answers of any status, are not
// the destination's.
func transportFailure(err error) bool {
	return err != nil && !isClientErr(err) && !errors.Is(err, errNoFreeConns)
}
