// Package engine is vkp's proxy: config loading, the route table, clusters
// and load balancing, the route pipeline, forwarding, and the mapping of
// failures to statuses.
//
// # Files
//
//	config.go, validate.go  decode: the document's shape, key by key, defaults
//	compile.go              compile: the Snapshot (clusters, routes, chains, router)
//	pipeline.go             the stage list; a route's chain ends in forward
//	registry.go             what outlives snapshots: pools, per-address state
//	router.go, lb.go        route matching, load-balancing policies
//	cluster.go              destinations, availability, picks
//	request.go              the client side of a request: checks, body held or streamed
//	forward.go              forward: attempts, retries, the header rewrite
//	hopheaders.go           hop-by-hop headers, order kept
//	upstream.go             the upstream connection pool and its connections
//	roundtrip.go            one exchange with an upstream: write, read, stream
//	cors.go                 the CORS stage: preflights answered, CORS fields set
//	mirror.go               the mirror stage and its settings
//	mirror_send.go          the mirror's queue, senders, budget, shutdown
//	mirror_breaker.go       a shadow destination that is down
//	errors.go               failures to statuses, in one place
//
// # Request flow
//
// fasthttp.Server (request bodies streamed) calls Engine.Handle. Handle
// refuses what a proxy must not pass on (checkRequest: smuggling shapes,
// bad names and versions), loads the current *Snapshot (an atomic pointer,
// swapped whole on reload), matches a route with the snapshot's Router and
// runs the route's handler chain, composed once per snapshot, on a pooled
// exchange (the request's state: route, body). The chain is the route's
// stages (pipeline.go: CORS preflight, cache, mirror, in that order) around
// forward, which picks an available destination with the cluster's Picker,
// rewrites the header in place (hop-by-hop headers out, X-Forwarded-* in),
// and does the exchange with vkp's own HTTP/1.1 client (upstream.go,
// roundtrip.go): target (base path + raw path) and Host per attempt, the
// body held or streamed, the answer read whole or streamed to the client.
// Failures go through statusFor in errors.go and nowhere else.
//
// # CORS
//
// A route with Access-Control-Allow-Origin or -Origin-Regex in its
// Metadata answers CORS preflights itself (204; the allow headers only for
// an allowed Origin) before its cache, mirror and origin see them, and
// sets the CORS fields of every other answer after the inner stages return,
// replacing the origin's, so a cache hit gets the requesting origin's
// fields and the stored entry is the origin's answer. The Router matches a
// preflight as the method it asks about. The regex must match the whole
// Origin, case-insensitively. An answer that depends on Origin says Vary:
// Origin (merged into the origin's Vary); with "*" every answer carries
// Access-Control-Allow-Origin: * and does not vary. "*" with credentials
// is a config error rather than an echo of any Origin: browsers refuse the
// pair, and echoing every Origin to credentialed requests would let any
// site read a user's answers, which an edge proxy must not do unasked.
//
// # Adding a route feature
//
// One file with a stage value (the Metadata keys it owns and its build
// function) and one line in pipeline.go's stage list; pipeline.go shows the
// shape. The stage's settings are compiled once per snapshot; a route that
// does not use it gets next unchanged, at no cost per request.
//
// # Contracts
//
//   - Router.Match, every Picker and a full proxied GET allocate nothing
//     (AllocsPerRun tests in alloc_test.go), nor does the header rewrite for
//     messages that repeat names, nor a small chunked answer, nor a request
//     or preflight on a CORS route (cors_alloc_test.go).
//   - The header rewrite never reorders the lines of a repeated field (RFC
//     9110 section 5.3; fasthttp's Del would: hopheaders.go), and the last
//     X-Forwarded-For entry is always the address vkp saw.
//   - Mirror copies never delay or change the main request (mirror.go). A
//     shadow destination that fails on the transport 5 times in a row is
//     skipped by that route, with probes, until it answers again
//     (mirror_breaker.go); its state lives with the route's snapshot.
//   - A Snapshot is immutable; requests use the one they loaded to the end.
//   - Connection pools (keyed by address and client options) and
//     per-address state (in-flight counts, availability) live in the
//     registry and outlive snapshots, so a reload keeps warm connections;
//     what a new snapshot no longer uses is retired when it is swapped in.
//   - Every pick goes through Destination.Available (clusters, and the
//     mirror, which adds its breakers).
//   - An upstream connection is reused only when its response was framed to
//     the last byte and nothing was read after it, and only after a peek
//     finds nothing waiting on it: bytes an upstream sends unasked never
//     reach any client.
//   - A GET or HEAD whose whole body is empty never announces one upstream
//     (writeRequest), and a cache refresh is always a bodyless HTTP/1.1 GET
//     (cache_fill.go refreshRequest): a Content-Length with no bytes behind
//     it would make the upstream read the next request as its body.
//   - A request body is held only when a stage needs it whole (mirror, a
//     Form Statement) or it is small; held bodies are bounded process-wide
//     (Options.BodyMemory). Responses over 64 KiB or of unknown length
//     stream. Trailer fields are dropped both ways.
//   - A request is retried at most once, and only when nothing of a
//     response arrived (forward.go has the rule).
//   - Bytes borrowed from the RequestCtx are valid only during Handle; work
//     that outlives it takes ownership first (see package pool).
//   - System calls per proxied request: on Linux a small request goes to
//     its upstream from inside the read of its answer (uconn.sendThenRead),
//     and a complete answer to a keep-alive client from inside the read of
//     its next request (clientconn.go, served through Listener), so neither
//     read starts with one that finds nothing. Both write after the
//     runtime has reset the socket's readiness, so an arrival is never
//     missed; the one case that can be (a pipelining client's request that
//     came before the reset) waits 100 ms at most.
//   - Config problems are reported all at once, each once, with its JSON
//     path and line:col, by the one load path validate, serve and reload
//     share; a config with any problem never replaces a working one.
package engine
