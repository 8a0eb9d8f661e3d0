package main

import (
	"context"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"
)

// needWrk skips a test when wrk is not installed, except in CI (CI set),
// where .ci/run installs it.
func needWrk(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("wrk"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("wrk is not installed")
		}
		t.Skip("wrk is not installed")
	}
}

// A closed loop of GETs run by wrk against a real origin: its summary
// becomes a LoadResult like the Go client's.
func TestWrkLoad(t *testing.T) {
	needWrk(t)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := NewOrigin(OriginConfig{Size: 300})
	go o.Serve(ln) //nolint:errcheck // ends with Shutdown
	t.Cleanup(func() { _ = o.srv.Shutdown() })

	res, err := RunLoad(context.Background(), LoadConfig{
		Addr: ln.Addr().String(), Path: "/x", ExpectBodySize: 300, Conns: 4, Duration: time.Second, Tool: toolWrk,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Tool != toolWrk || res.Mode != "closed" || res.OK == 0 || res.ErrorCount() != 0 {
		t.Fatalf("tool %s, mode %s, OK %d, errors %s", res.Tool, res.Mode, res.OK, res.ErrorString())
	}
	if got := o.Stats().Requests; got < res.OK || got > res.OK+4 {
		t.Errorf("the origin answered %d requests, wrk reports %d", got, res.OK)
	}
	l := res.Latency
	if l.P50 <= 0 || l.P99 < l.P50 || l.Max < l.P99 || l.Count != res.OK || res.BytesRecv != 300*res.OK {
		t.Errorf("latency %+v, bytes %d", l, res.BytesRecv)
	}
	if res.Elapsed < 900*time.Millisecond || res.Elapsed > 3*time.Second {
		t.Errorf("elapsed %v for a 1 s run", res.Elapsed)
	}

	// What wrk cannot do (bodies, the open loop) stays with the Go client.
	res, err = RunLoad(context.Background(), LoadConfig{
		Addr: ln.Addr().String(), Method: "POST", BodySize: 10, ExpectBodySize: 300, Conns: 2,
		Duration: 300 * time.Millisecond, Tool: toolWrk,
	})
	if err != nil || res.Tool != toolGo || res.OK == 0 {
		t.Fatalf("POST: %v, tool %s, OK %d", err, res.Tool, res.OK)
	}
}

func TestParseWrk(t *testing.T) {
	out := []byte("Running 5s test @ http://127.0.0.1:1/\n  1 threads and 32 connections\n" +
		"bench-result requests=1000 duration=5000000 connect=0 read=2 write=1 status=10 timeout=3 mean=650.5 p50=600 p90=900 p99=2000 p999=4000 max=9000\n")
	res, err := parseWrk(out, 128)
	if err != nil {
		t.Fatal(err)
	}
	if res.Started != 1000 || res.OK != 990 || res.Elapsed != 5*time.Second || res.BytesRecv != 990*128 {
		t.Fatalf("%+v", res)
	}
	if res.Errors[errStatus] != 10 || res.Errors[errIO] != 3 || res.Errors[errTimeout] != 3 || res.Errors[errConnect] != 0 {
		t.Fatalf("errors %v", res.Errors)
	}
	if res.Latency.P99 != 2*time.Millisecond || res.Latency.Mean != 650500*time.Nanosecond {
		t.Fatalf("latency %+v", res.Latency)
	}
	if _, err := parseWrk([]byte("Running 5s test\n"), 0); err == nil {
		t.Fatal("no summary line: want an error")
	}
	if _, err := loadTool("ab"); err == nil {
		t.Fatal("--load ab: want an error")
	}
}
