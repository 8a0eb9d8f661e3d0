// Package expr compiles VKProxy's route Statement language and CacheKey
// templates into closures over *fasthttp.RequestCtx.
//
// Both are compiled once per config snapshot; evaluating a Statement or
// rendering a template allocates nothing (see alloc_test.go). Compiled values
// are immutable and safe for concurrent use.
//
// # Statements
//
// A Statement is the legacy VKProxy language (seeds' docs/statement.md):
//
//	Header('x-env') = 'test' and Path ~= '^/api/\d+' and Method in ('GET', 'POST')
//	not(ContentLength > 1024) or Cookie('beta') != null
//
// Grammar (keywords and field names are case-insensitive):
//
//	statement  := or
//	or         := and { "or" and }
//	and        := unary { "and" unary }
//	unary      := "not" unary | "(" or ")" | comparison
//	comparison := operand op operand | field "in" "(" value { "," value } ")" | boolfield
//	op         := "=" | "!=" | "<" | "<=" | ">" | ">=" | "~="
//	operand    := field | value
//	field      := Path | PathBase | Method | Scheme | IsHttps | Protocol | ContentType |
//	              ContentLength | Host | QueryString | HasFormContentType |
//	              ("Header" | "Query" | "Cookie" | "Form") "(" string ")"
//	value      := string | number | true | false | null
//
// "and" binds tighter than "or", as in SQL (VKProxy evaluated strictly left
// to right). Strings are '...' or "..."; \' and \" escape the quote and
// every other backslash is kept, so '\d+' is the regex \d+. Numbers are
// -?digits[.digits]. Whitespace is space, tab, CR and LF.
//
// Exactly one side of a comparison is a field. A value on the left is
// swapped to the right with the operator mirrored, so 3 > ContentLength means
// ContentLength < 3 (VKProxy negated the operator instead, which is wrong at
// equality).
//
// # Fields
//
//   - Path: ctx.Path(), decoded and normalised as fasthttp does, without the
//     query.
//   - PathBase: always "" — vkp mounts nothing under a base path.
//   - Method, Protocol ("HTTP/1.1", "HTTP/1.0"), Host (the Host header,
//     port included; null when empty), ContentType (null when empty).
//   - Scheme: "https" when the connection is TLS, else "http".
//   - QueryString: the raw query with its leading "?", as in ASP.NET, taken
//     from the request line; null when there is no "?".
//   - ContentLength: the Content-Length header as a number; null when absent
//     (including chunked requests), so "ContentLength = null" tests for "no
//     Content-Length" and "!= null" for its presence.
//   - IsHttps, HasFormContentType: booleans. HasFormContentType is true for
//     application/x-www-form-urlencoded and multipart/form-data (media type
//     compared case-insensitively, parameters ignored).
//   - Header('k'), Query('k'), Cookie('k'), Form('k'): every value of key k,
//     matched case-insensitively. Repeated headers and query keys are several
//     values; one header line "a, b" is one value. The special keys '#Keys',
//     '#Values' and '#KVS' stand for any name, any value, and any name or
//     value of the collection; such a field is null when the collection is
//     empty.
//
// # Comparisons
//
//   - Text is compared case-insensitively (bytes.EqualFold); "~=" is an
//     unanchored, case-insensitive Go regexp (RE2 syntax, so no
//     backreferences or lookaround), compiled once. An empty or blank pattern
//     is an error. regexp keeps its matching machines in a sync.Pool, so a
//     match allocates only when the pool is empty (first use, or after a GC
//     cleared it).
//   - A multi-valued field satisfies =, ~=, <, ..., in when any value does.
//     "!=" is always the negation of "=": none equals, or the field is absent.
//   - "= null" is true when the field is absent, "!= null" when present; an
//     absent field fails every other comparison except "!=" and an "in" list
//     that contains null.
//   - A number literal compares numerically: the value is parsed as
//     [+-]digits[.digits] and a value that is not a number never compares
//     equal (so "!=" is true for it). The ordering operators < <= > >= are
//     accepted only where a number can occur — ContentLength and the keyed
//     fields — so "Method > 3" and "Path < 'x'" are compile errors.
//   - ContentLength takes numbers, numeric strings and null; "~=" on it is an
//     error. true/false compared with a text field compare as the text
//     "true"/"false".
//   - IsHttps and HasFormContentType take =, != and in with true/false, the
//     strings 'true'/'false', or numbers (0 is false, any other number true,
//     as VKProxy converts them). A bare boolean field means "= true":
//     "IsHttps and Path = '/'", "not IsHttps".
//   - "in" lists may mix strings, numbers, booleans and null; each element
//     is compared as above.
//   - Form('k') is only defined for form bodies. For any other Content-Type
//     every Form comparison is false, including "!=" and "= null" (as in
//     VKProxy). URL-encoded bodies are read through fasthttp's PostArgs, which
//     only parses a lower-case "application/x-www-form-urlencoded" type.
//     Multipart bodies are read through ctx.MultipartForm(): the first
//     evaluation per request parses the body and allocates (fasthttp caches
//     the result; a malformed body is re-parsed on every evaluation, and a
//     streamed body is consumed into the form), and multipart '#Keys' and
//     friends iterate a map, so their template rendering has no fixed order.
//
// fasthttp's Header.Method allocates a new "GET" on each call when a
// request's method was never set; requests read from a connection always
// have one, so this only affects hand-built requests in tests, which should
// call SetMethod.
//
// Header('k') walks the request headers with fasthttp's header iterator,
// which also yields Host, Content-Type, User-Agent, Content-Length and the
// Cookie header rebuilt in fasthttp's reused buffer; only a request with
// trailers makes that iterator allocate.
//
// # Errors
//
// Compile and CompileTemplate return an *Error with the 1-based line and
// column of the offending token, the token itself and a message, printed as
// `1:18: expected operator, found "foo"`. Unknown fields, a comparison
// without a field or between two fields, an unsupported operator for the
// field's type, a bad regex, an empty statement and malformed tokens are all
// compile errors; unlike VKProxy, no Statement is silently dropped.
//
// # Templates
//
// A CacheKey template is literal text with fields in braces:
// "{Method}_{Path}", "{Header('User-Agent')}". "{{" and "}}" are literal
// braces, so "{{123}}{Path}" renders "{123}/faq". A brace may hold any field
// or a literal value; absent fields render as nothing, multi-valued fields
// join with "," ('#KVS' renders name=value pairs), ContentLength renders its
// digits and booleans "true"/"false". Output keeps the request's case
// (VKProxy upper-cased it). In a template, {Path} is the path as the client
// sent it and vkp forwards it (not decoded or normalised, without the
// query), unlike the Statement field: a key names what the origin is asked
// for. An empty template, "{}", an unmatched brace and
// unknown fields are compile errors.
//
// VKProxy's newer syntax (Request.Path == '/a' && ..., templates
// {{Request.Path}}) is not compiled: the error shows the same condition in
// this language.
package expr
