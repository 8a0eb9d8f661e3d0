// Package engine is vkp's proxy: config loading, the route table, clusters
// and load balancing, forwarding, and the mapping of failures to statuses.
//
// # Request flow
//
// fasthttp.Server calls Engine.Handle. Handle loads the current *Snapshot
// (an atomic pointer, swapped whole on reload), matches a route with the
// snapshot's Router and runs the route's handler chain, composed once per
// snapshot. The last stage, forward, picks a destination with the cluster's
// Picker, rewrites the request in place (hop-by-hop headers out,
// X-Forwarded-* in, base path, Host) and sends it with the destination's
// fasthttp.HostClient. Failures go through statusFor in errors.go and
// nowhere else.
//
// # Contracts
//
//   - Router.Match, every Picker and a full proxied GET allocate nothing
//     (AllocsPerRun tests in alloc_test.go), nor does the header rewrite for
//     messages that repeat names.
//   - The header rewrite never reorders the lines of a repeated field (RFC
//     9110 section 5.3; fasthttp's Del would: forward.go), and the last
//     X-Forwarded-For entry is always the address vkp saw.
//   - Mirror copies never delay or change the main request (mirror.go). A
//     shadow destination that fails on the transport 5 times in a row is
//     skipped by that route, with probes, until it answers again
//     (mirror_breaker.go); its state lives with the route's snapshot.
//   - A Snapshot is immutable; requests use the one they loaded to the end.
//   - Upstream connection pools and in-flight counts are keyed by address and
//     outlive snapshots, so a reload keeps warm connections.
//   - Bytes borrowed from the RequestCtx are valid only during Handle; work
//     that outlives it takes ownership first (see package pool).
//   - Config problems are reported all at once, each with its JSON path and
//     line:col; a config with any problem never replaces a working one.
package engine
