package expr

import (
	"strings"
	"testing"
)

func TestEval(t *testing.T) {
	ctxs := sampleCtxs(t)
	tests := []struct {
		name string
		req  string // key of sampleCtxs
		stmt string
		want bool
	}{
		// Path and the other single text fields.
		{"path eq", "base", `Path = '/api/123'`, true},
		{"path eq ignores case", "base", `Path = '/API/123'`, true},
		{"path eq excludes query", "base", `Path = '/api/123?a=1&a=2&B=x'`, false},
		{"path ne", "base", `Path != '/x'`, true},
		{"path ne same", "base", `Path != '/api/123'`, false},
		{"path regex", "base", `Path ~= '^/api/\d+$'`, true},
		{"path regex ignores case", "base", `Path ~= '^/API/'`, true},
		{"path regex unanchored", "base", `Path ~= 'pi/1'`, true},
		{"path regex miss", "base", `Path ~= '^/web'`, false},
		{"path in", "base", `Path in ('/x', '/API/123')`, true},
		{"path in miss", "base", `Path in ('/x')`, false},
		{"path number never equals", "base", `Path = 123`, false},
		{"path not null", "base", `Path != null`, true},
		{"pathbase empty", "base", `PathBase = ''`, true},
		{"pathbase not null", "base", `PathBase = null`, false},
		{"method eq", "base", `Method = 'get'`, true},
		{"method ne", "base", `Method != 'GET'`, false},
		{"method in", "form", `Method in ('GET', 'post')`, true},
		{"method regex", "base", `Method ~= '^(get|head)$'`, true},
		{"scheme http", "base", `Scheme = 'http'`, true},
		{"scheme https", "tls", `Scheme = 'HTTPS'`, true},
		{"protocol 1.1", "base", `Protocol = 'HTTP/1.1'`, true},
		{"protocol 1.0", "http10", `Protocol = 'http/1.0'`, true},
		{"host with port", "base", `Host = 'EXAMPLE.com:8080'`, true},
		{"host regex", "base", `Host ~= ':8080$'`, true},
		{"querystring has question mark", "base", `QueryString = '?a=1&a=2&B=x'`, true},
		{"querystring regex", "base", `QueryString ~= '^\?a=1'`, true},
		{"querystring absent", "form", `QueryString = null`, true},
		{"querystring absent ne", "form", `QueryString != '?x'`, true},
		{"querystring absent regex", "form", `QueryString ~= '.*'`, false},
		{"contenttype absent", "base", `ContentType = null`, true},
		{"contenttype absent ne", "base", `ContentType != 'x'`, true},
		{"contenttype absent regex", "base", `ContentType ~= '.*'`, false},
		{"contenttype regex", "json", `ContentType ~= 'JSON'`, true},
		{"contenttype eq full", "json", `ContentType = 'application/json; charset=utf-8'`, true},
		{"contenttype in absent", "base", `ContentType in ('a/b')`, false},
		{"contenttype in null", "base", `ContentType in ('a/b', null)`, true},

		// ContentLength: numbers, null, coercions, flipping.
		{"cl absent is null", "base", `ContentLength = null`, true},
		{"cl absent not ne null", "base", `ContentLength != null`, false},
		{"cl chunked is null", "chunked", `ContentLength = null`, true},
		{"cl zero is not null", "zero", `ContentLength = 0`, true},
		{"cl zero ne null", "zero", `ContentLength != null`, true},
		{"cl eq", "json", `ContentLength = 2`, true},
		{"cl eq decimal", "json", `ContentLength = 2.0`, true},
		{"cl eq string", "json", `ContentLength = '2'`, true},
		{"cl ne", "json", `ContentLength != 2`, false},
		{"cl ne absent", "base", `ContentLength != 5`, true},
		{"cl lt", "json", `ContentLength < 3`, true},
		{"cl le", "json", `ContentLength <= 2`, true},
		{"cl gt", "json", `ContentLength > 1.5`, true},
		{"cl ge", "json", `ContentLength >= 3`, false},
		{"cl gt absent", "base", `ContentLength > -1`, false},
		{"cl lt absent", "base", `ContentLength < 10`, false},
		{"cl in", "json", `ContentLength in (1, '2')`, true},
		{"cl in miss", "json", `ContentLength in (1, 3)`, false},
		{"cl in null", "base", `ContentLength in (5, null)`, true},
		{"cl in without null", "base", `ContentLength in (5)`, false},
		{"flip gt to lt", "json", `3 > ContentLength`, true},
		{"flip gt at equality", "json", `2 > ContentLength`, false},
		{"flip ge", "json", `2 >= ContentLength`, true},
		{"flip lt", "json", `1 < ContentLength`, true},
		{"flip le", "json", `3 <= ContentLength`, false},
		{"flip eq", "json", `2 = ContentLength`, true},
		{"flip string", "base", `'GET' = Method`, true},
		{"flip ne", "base", `'/x' != Path`, true},
		{"flip regex", "base", `'^/api' ~= Path`, true},
		{"flip null", "base", `null = ContentType`, true},

		// Booleans.
		{"ishttps false", "base", `IsHttps = false`, true},
		{"ishttps true", "tls", `IsHttps = true`, true},
		{"ishttps ne", "base", `IsHttps != true`, true},
		{"ishttps string", "base", `IsHttps = 'False'`, true},
		{"ishttps in", "tls", `IsHttps in (true)`, true},
		{"ishttps in miss", "base", `IsHttps in (true)`, false},
		{"ishttps in both", "base", `IsHttps in (true, 'false')`, true},
		{"bare bool", "tls", `IsHttps`, true},
		{"bare bool false", "base", `IsHttps`, false},
		{"not bare bool", "base", `not IsHttps`, true},
		{"bare bool in and", "tls", `IsHttps and Path = '/secure'`, true},
		{"flip bool", "tls", `true = IsHttps`, true},
		{"form content type", "form", `HasFormContentType`, true},
		{"multipart content type", "multipart", `HasFormContentType = true`, true},
		{"json not form", "json", `HasFormContentType`, false},
		{"no body not form", "base", `HasFormContentType = false`, true},

		// Headers: single, multi-valued, absent, numeric, special keys.
		{"header eq", "base", `Header('x-env') = 'TEST'`, true},
		{"header name case", "base", `HEADER('X-ENV') = 'test'`, true},
		{"header ne", "base", `Header('x-env') != 'prod'`, true},
		{"header ne equal", "base", `Header('x-env') != 'test'`, false},
		{"header absent ne", "base", `Header('x-missing') != 'a'`, true},
		{"header absent eq", "base", `Header('x-missing') = 'a'`, false},
		{"header absent null", "base", `Header('x-missing') = null`, true},
		{"header present null", "base", `Header('x-env') = null`, false},
		{"header present ne null", "base", `Header('x-env') != null`, true},
		{"header absent regex", "base", `Header('x-missing') ~= '.*'`, false},
		{"header absent in", "base", `Header('x-missing') in ('a')`, false},
		{"header absent in null", "base", `Header('x-missing') in ('a', null)`, true},
		{"header multi first", "base", `Header('x-multi') = 'one'`, true},
		{"header multi second", "base", `Header('x-multi') = 'two'`, true},
		{"header multi ne any", "base", `Header('x-multi') != 'two'`, false},
		{"header multi ne none", "base", `Header('x-multi') != 'three'`, true},
		{"header multi in", "base", `Header('x-multi') in ('zero', 'TWO')`, true},
		{"header multi regex", "base", `Header('x-multi') ~= '^tw'`, true},
		{"header comma line is one value", "base", `Header('x-list') = 'a'`, false},
		{"header comma line whole", "base", `Header('x-list') = 'a, b'`, true},
		{"header host", "base", `Header('host') = 'example.com:8080'`, true},
		{"header user agent", "base", `Header('User-Agent') ~= '^test-ua'`, true},
		{"header cookie line", "base", `Header('cookie') ~= 'sid=abc'`, true},
		{"header content length", "json", `Header('content-length') = 2`, true},
		{"header num eq", "base", `Header('x-num') = 42`, true},
		{"header num eq decimal", "base", `Header('x-num') = 42.0`, true},
		{"header num gt", "base", `Header('x-num') > 41.5`, true},
		{"header num lt", "base", `Header('x-num') < 42`, false},
		{"header num le", "base", `Header('x-num') <= 42`, true},
		{"header num ge", "base", `Header('x-num') >= 43`, false},
		{"header num ne", "base", `Header('x-num') != 42`, false},
		{"header num spaces", "base", `Header('x-float') = 3.5`, true},
		{"header num negative", "base", `Header('x-num') > -5.6`, true},
		{"header non numeric gt", "base", `Header('x-env') > 1`, false},
		{"header non numeric lt", "base", `Header('x-env') < 1`, false},
		{"header non numeric ne", "base", `Header('x-env') != 1`, true},
		{"header num in", "base", `Header('x-num') in (1, 42)`, true},
		{"header num in string", "base", `Header('x-num') in ('42')`, true},
		{"header num flipped", "base", `43 > Header('x-num')`, true},
		{"header bool text", "base", `Header('x-flag') = true`, true},
		{"header bool in", "base", `Header('x-flag') in (false, true)`, true},
		{"keys eq", "base", `Header('#Keys') = 'x-env'`, true},
		{"keys miss", "base", `Header('#Keys') = 'x-nope'`, false},
		{"keys ne", "base", `Header('#Keys') != 'x-nope'`, true},
		{"keys ne present", "base", `Header('#keys') != 'X-ENV'`, false},
		{"keys are not values", "base", `Header('#Keys') = 'test'`, false},
		{"keys regex", "base", `Header('#KEYS') ~= '^x-mu'`, true},
		{"keys in", "base", `Header('#Keys') in ('a', 'x-num')`, true},
		{"keys not null", "base", `Header('#Keys') != null`, true},
		{"values eq", "base", `Header('#Values') = 'two'`, true},
		{"values are not keys", "base", `Header('#Values') = 'x-env'`, false},
		{"values numeric", "base", `Header('#Values') >= 42`, true},
		{"kvs key", "base", `Header('#KVS') = 'x-env'`, true},
		{"kvs value", "base", `Header('#KVS') = 'test'`, true},
		{"kvs miss", "base", `Header('#KVS') = 'nope'`, false},

		// Query.
		{"query eq", "base", `Query('a') = '2'`, true},
		{"query eq number", "base", `Query('a') = 1`, true},
		{"query key case", "base", `Query('b') = 'X'`, true},
		{"query ne any", "base", `Query('a') != '1'`, false},
		{"query absent null", "base", `Query('c') = null`, true},
		{"query in", "base", `Query('a') in ('3', '1')`, true},
		{"query keys", "base", `Query('#Keys') = 'B'`, true},
		{"query kvs", "base", `Query('#KVS') = 'x'`, true},
		{"query empty keys null", "form", `Query('#Keys') = null`, true},
		{"query is not form", "json", `Query('name') = 'q' and Form('name') != 'q'`, false},

		// Cookies.
		{"cookie eq", "base", `Cookie('sid') = 'abc'`, true},
		{"cookie case", "base", `Cookie('SID') = 'ABC'`, true},
		{"cookie ne", "base", `Cookie('theme') != 'light'`, true},
		{"cookie absent ne", "base", `Cookie('none') != 'x'`, true},
		{"cookie absent null", "base", `Cookie('none') = null`, true},
		{"cookie regex", "base", `Cookie('theme') ~= '^d'`, true},
		{"cookie keys", "base", `Cookie('#Keys') = 'theme'`, true},
		{"cookie values", "base", `Cookie('#Values') in ('dark')`, true},
		{"no cookies null", "json", `Cookie('#Keys') = null`, true},

		// Forms.
		{"form eq", "form", `Form('name') = 'bob'`, true},
		{"form multi", "form", `Form('tag') = 'y'`, true},
		{"form ne", "form", `Form('tag') != 'z'`, true},
		{"form ne present", "form", `Form('tag') != 'x'`, false},
		{"form absent null", "form", `Form('missing') = null`, true},
		{"form keys", "form", `Form('#Keys') = 'tag'`, true},
		{"form kvs", "form", `Form('#KVS') = 'bob'`, true},
		{"form on json eq", "json", `Form('name') = 'q'`, false},
		{"form on json ne", "json", `Form('name') != 'x'`, false},
		{"form on json null", "json", `Form('name') = null`, false},
		{"form on json not null", "json", `Form('name') != null`, false},
		{"form on get", "base", `Form('a') in ('1', null)`, false},
		{"multipart eq", "multipart", `Form('name') = 'Bob'`, true},
		{"multipart key case", "multipart", `Form('NAME') = 'bob'`, true},
		{"multipart ne", "multipart", `Form('tag') != 'x'`, false},
		{"multipart values", "multipart", `Form('#Values') = 'x'`, true},
		{"multipart absent", "multipart", `Form('nope') = null`, true},

		// Logic: precedence, not, parentheses.
		{"and binds tighter than or", "base", `Method = 'GET' or Method = 'POST' and Path = '/nope'`, true},
		{"and before or left", "base", `Path = '/nope' and Method = 'POST' or Method = 'GET'`, true},
		{"parens override", "base", `(Method = 'GET' or Method = 'POST') and Path = '/nope'`, false},
		{"or of ands", "base", `Method = 'POST' and Path = '/api/123' or Method = 'GET' and Path = '/api/123'`, true},
		{"not binds tighter than and", "base", `not Method = 'POST' and Path = '/x'`, false},
		{"not parens", "base", `not(Method = 'GET')`, false},
		{"not not", "base", `not not Method = 'GET'`, true},
		{"not group", "base", `NOT (Path = '/x' OR Method = 'POST')`, true},
		{"nested parens", "base", `((Method = 'GET') and ((Path = '/api/123')))`, true},
		{"keywords any case", "base", `method = 'GET' AnD PATH = '/api/123' oR Method IN ('x')`, true},
		{"null any case", "base", `ContentType = NULL and IsHttps = FALSE`, true},
		{"multiline", "base", "Method = 'GET'\r\n\tand Path = '/api/123'\n", true},
		{"no spaces", "base", `Method='GET'and(Path!='/x')`, true},

		// Strings and escapes.
		{"escaped single quote", "base", `Header('x-quote') = 'it\'s "quoted"'`, true},
		{"escaped double quote", "base", `Header('x-quote') = "it's \"quoted\""`, true},
		{"backslashes kept", "base", `Header('x-bs') = 'a\\b'`, true},
		{"backslash regex", "base", `Header('x-bs') ~= '^a\\\\b$'`, true},
		{"regex class kept", "base", `Path ~= '/\d{3}$'`, true},
		{"double quoted key", "base", `Header("X-Env") = "test"`, true},
		{"example from design", "base", `Header('x-env') = 'test' and Path ~= '^/api/\d+' and Method in ('GET','POST')`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, ok := ctxs[tt.req]
			if !ok {
				t.Fatalf("no request %q", tt.req)
			}
			p, err := Compile(tt.stmt)
			if err != nil {
				t.Fatalf("Compile(%q): %v", tt.stmt, err)
			}
			if got := p.Eval(ctx); got != tt.want {
				t.Errorf("Compile(%q).Eval(%s) = %v, want %v", tt.stmt, tt.req, got, tt.want)
			}
			// Evaluating twice must give the same answer: fasthttp parses
			// query, cookies and forms lazily on the first call.
			if got := p.Eval(ctx); got != tt.want {
				t.Errorf("second Eval = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestPredicateString(t *testing.T) {
	src := `Method = 'GET'`
	p, err := Compile(src)
	if err != nil {
		t.Fatal(err)
	}
	if p.String() != src {
		t.Errorf("String() = %q, want %q", p.String(), src)
	}
}

func TestNilPredicateMatches(t *testing.T) {
	var p *Predicate
	if !p.Eval(baseCtx()) {
		t.Error("nil predicate must match every request")
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name      string
		src       string
		line, col int
		token     string
		msg       string // substring of the message
	}{
		{"empty", ``, 1, 1, "", "empty statement"},
		{"blank", "  \n ", 2, 2, "", "empty statement"},
		{"trailing word", `Path = '/a' foo`, 1, 13, "foo", `expected "and", "or" or end of input, found "foo"`},
		{"missing operator", `Header('x') = 'a' and Method foo`, 1, 30, "foo", `expected operator, found "foo"`},
		{"bare text field", `Path`, 1, 5, "", "expected operator, found end of input"},
		{"unknown field", `Foo = 1`, 1, 1, "Foo", `unknown field "Foo"`},
		{"unknown keyed field", `Bar('x') = 1`, 1, 1, "Bar", `unknown keyed field "Bar"`},
		{"unknown field line 2", "Path = 'a'\nand Foo = 1", 2, 5, "Foo", "unknown field"},
		{"column counts runes", `Path = 'é' and Foo = 1`, 1, 16, "Foo", "unknown field"},
		{"two values", `1 = 1`, 1, 1, "1", "needs a field"},
		{"two strings", `'a' != "b"`, 1, 1, "'a'", "needs a field"},
		{"two fields", `Path = Method`, 1, 8, "Method", `cannot compare field "Path" with field "Method"`},
		{"ordering on text field", `Method > 3`, 1, 8, ">", `operator > is not supported for field "Method"`},
		{"ordering with string", `Path < 'x'`, 1, 6, "<", "not supported"},
		{"ordering keyed with string", `Header('a') >= 'x'`, 1, 16, "'x'", "needs a number"},
		{"ordering with null", `Header('a') < null`, 1, 13, "<", "cannot compare with null"},
		{"regex with null", `Path ~= null`, 1, 6, "~=", "cannot compare with null"},
		{"regex with number", `Path ~= 5`, 1, 9, "5", "quoted regex"},
		{"regex with bool", `Path ~= true`, 1, 9, "true", "quoted regex"},
		{"empty regex", `Path ~= ''`, 1, 9, "''", "empty regex"},
		{"blank regex", `Path ~= "  "`, 1, 9, `"  "`, "empty regex"},
		{"bad regex", `Path ~= '(['`, 1, 9, "'(['", "invalid regex"},
		{"bad regex flipped", `'a(' ~= Path`, 1, 1, "'a('", "invalid regex"},
		{"cl with text", `ContentLength = 'abc'`, 1, 17, "'abc'", "compares with numbers"},
		{"cl with bool", `ContentLength != true`, 1, 18, "true", "compares with numbers"},
		{"cl regex", `ContentLength ~= '1'`, 1, 15, "~=", "~= is not supported"},
		{"cl in text", `ContentLength in (1, 'x')`, 1, 22, "'x'", "compares with numbers"},
		{"cl lt null", `ContentLength < null`, 1, 15, "<", "cannot compare with null"},
		{"bool with null", `HasFormContentType = null`, 1, 22, "null", "true or false"},
		{"bool with text", `IsHttps in (true, 'yes')`, 1, 19, "'yes'", "true or false"},
		{"bool ordering", `IsHttps > true`, 1, 9, ">", "not supported"},
		{"bool regex", `IsHttps ~= 'x'`, 1, 9, "~=", "not supported"},
		{"double equals", `Path == '/'`, 1, 6, "==", `use "="`},
		{"c and", `Path = '/' && Method = 'GET'`, 1, 12, "&&", `use "and"`},
		{"c or", `Path = '/' || Method = 'GET'`, 1, 12, "||", `use "or"`},
		{"bang", `Path ! '/'`, 1, 6, "!", "unexpected"},
		{"sql ne", `Path <> '/'`, 1, 6, "<>", `use "!="`},
		{"stray char", `Path = '/' §`, 1, 12, "§", "unexpected character"},
		{"lone tilde", `Path ~ '/'`, 1, 6, "~", "unexpected character"},
		{"malformed number", `ContentLength = 2.3.4`, 1, 17, "2.3.4", "malformed number"},
		{"number trailing dot", `ContentLength = 2.`, 1, 17, "2.", "malformed number"},
		{"number glued", `ContentLength = 5kb`, 1, 17, "5kb", "malformed number"},
		{"minus number sequence", `ContentLength = 1-2`, 1, 18, "-2", `expected "and", "or"`},
		{"unterminated string", `Path = 'abc`, 1, 8, "'abc", "unterminated string"},
		{"unterminated escape", `Path = 'abc\'`, 1, 8, `'abc\'`, "unterminated string"},
		{"unclosed paren", `(Path = '/'`, 1, 12, "", `expected ")"`},
		{"unmatched paren", `Path = '/')`, 1, 11, ")", `unmatched ")"`},
		{"paren value", `(5)`, 1, 3, ")", "expected operator"},
		{"empty parens", `()`, 1, 2, ")", "expected field or value"},
		{"leading and", `and Path = '/'`, 1, 1, "and", "found keyword"},
		{"trailing and", `Path = '/' and`, 1, 15, "", "end of input"},
		{"double and", `Path = '/' and and Method = 'GET'`, 1, 16, "and", "found keyword"},
		{"not alone", `not`, 1, 4, "", "end of input"},
		{"missing value", `Path =`, 1, 7, "", "expected field or value"},
		{"in empty", `Method in ()`, 1, 12, ")", `empty "in" list`},
		{"in trailing comma", `Method in ('a',)`, 1, 16, ")", "expected field or value"},
		{"in no parens", `Method in 'a'`, 1, 11, "'a'", `expected "("`},
		{"in missing comma", `Method in ('a' 'b')`, 1, 16, "'b'", `expected "," or ")"`},
		{"in value left", `'a' in ('a')`, 1, 1, "'a'", `"in" needs a field`},
		{"in field element", `Method in ('GET', Path)`, 1, 19, "Path", "values only"},
		{"key not quoted", `Header(x) = 1`, 1, 8, "x", "must be a quoted string"},
		{"key empty", `Header('') = 1`, 1, 8, "''", "empty Header key"},
		{"key no parens", `Header = 'x'`, 1, 8, "=", `expected "(" after Header`},
		{"key unclosed", `Cookie('a' = 'b'`, 1, 12, "=", `expected ")" after Cookie key`},
		{"field takes no key", `Path('x') = 1`, 1, 5, "(", "takes no key"},
		{"brace in statement", `Path = {`, 1, 8, "{", "expected field or value"},
		{"too deep", strings.Repeat("(", 101) + "Path = '/'" + strings.Repeat(")", 101), 1, 101, "(", "nested too deeply"},
		{"too many nots", strings.Repeat("not ", 101) + "IsHttps", 1, 401, "not", "nested too deeply"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Compile(tt.src)
			if err == nil {
				t.Fatalf("Compile(%q) = %v, want error", tt.src, p)
			}
			e, ok := err.(*Error)
			if !ok {
				t.Fatalf("error %T %v, want *Error", err, err)
			}
			if e.Line != tt.line || e.Col != tt.col || e.Token != tt.token || !strings.Contains(e.Msg, tt.msg) {
				t.Errorf("Compile(%q) error = {%d:%d %q %q}, want {%d:%d %q ...%q...}",
					tt.src, e.Line, e.Col, e.Token, e.Msg, tt.line, tt.col, tt.token, tt.msg)
			}
			if !strings.HasPrefix(e.Error(), strings.Join([]string{itoa(e.Line), itoa(e.Col), " "}, ":")) {
				t.Errorf("Error() = %q, want line:col prefix", e.Error())
			}
		})
	}
}

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}

func TestErrorFormat(t *testing.T) {
	_, err := Compile(`Header('x') = 'a' and Method foo`)
	want := `1:30: expected operator, found "foo"`
	if err == nil || err.Error() != want {
		t.Errorf("error = %v, want %s", err, want)
	}
}

func TestParseNum(t *testing.T) {
	tests := []struct {
		in   string
		want float64
		ok   bool
	}{
		{"0", 0, true},
		{"42", 42, true},
		{"-5.6", -5.6, true},
		{"0.789", 0.789, true},
		{"+3", 3, true},
		{" 7 ", 7, true},
		{".5", 0.5, true},
		{"5.", 5, true},
		{"12345678901234567890123", 12345678901234567890123, true},
		{"", 0, false},
		{"-", 0, false},
		{".", 0, false},
		{"1e3", 0, false},
		{"1.2.3", 0, false},
		{"abc", 0, false},
		{"4 2", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, ok := parseNum([]byte(tt.in))
			if ok != tt.ok || (ok && got != tt.want) {
				t.Errorf("parseNum(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.ok)
			}
		})
	}
}

// VKProxy compares boolean fields with numbers as Convert.ToBoolean does:
// 0 is false, anything else true.
func TestBoolFieldsTakeNumbers(t *testing.T) {
	https := baseCtx()
	for src, want := range map[string]bool{
		"IsHttps = 0": true, "IsHttps = 1": false, "IsHttps != 0": false, "IsHttps in (0)": true,
		"IsHttps in (1, 2)": false, "HasFormContentType = 0": true,
	} {
		p, err := Compile(src)
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		if got := p.Eval(https); got != want {
			t.Errorf("%s on a plain-HTTP GET = %v, want %v", src, got, want)
		}
	}
}

// VKProxy's newer syntax is refused with the supported spelling of the same
// condition.
func TestNewerSyntaxNamed(t *testing.T) {
	for src, want := range map[string]string{
		"Request.Path == '/a'": "write it as: Path = '/a'",
		"Request.Method == 'GET' && Request.Headers['x-env'] == 'test'":  "write it as: Method = 'GET' and Header('x-env') = 'test'",
		"Request.Headers.['x-env'] == 'test' || Request.IsHttps == true": "write it as: Header('x-env') = 'test' or IsHttps = true",
	} {
		_, err := Compile(src)
		if err == nil || !strings.Contains(err.Error(), "newer statement syntax") || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v; want it to say %q", src, err, want)
		}
	}
	_, err := CompileTemplate("{{Request.Path}}_{{Request.Method}}")
	if err == nil || !strings.Contains(err.Error(), "write it as: {Path}_{Method}") {
		t.Errorf("template: %v", err)
	}
}
