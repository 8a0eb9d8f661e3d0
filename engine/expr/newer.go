package expr

import (
	"regexp"
	"strings"
)

// VKProxy's newer expression syntax (`Request.Path == '/a' &&
// Request.Headers['x'] == 'y'`, templates `{{Request.Path}}`) is not the
// language vkp compiles. Rather than fail on the first '.', newerSyntax
// names the syntax and shows the same condition in the supported spelling.

var (
	// requestRef finds Request.Field, Request.Collection['key'] and
	// Request.Collection.['key'] references.
	requestRef  = regexp.MustCompile(`\bRequest\.([A-Za-z]+)(\.?\[\s*('[^']*'|"[^"]*")\s*\])?`)
	collections = map[string]string{"headers": "Header", "header": "Header", "query": "Query", "cookies": "Cookie", "cookie": "Cookie", "form": "Form"}
)

// newerSyntax returns an *Error when src uses the newer syntax, nil
// otherwise. template says src is a CacheKey template.
func newerSyntax(src string, template bool) error {
	loc := requestRef.FindStringIndex(src)
	if loc == nil {
		return nil
	}
	fix := requestRef.ReplaceAllStringFunc(src, func(m string) string {
		sub := requestRef.FindStringSubmatch(m)
		name, key := sub[1], sub[3]
		if key != "" {
			if coll, ok := collections[strings.ToLower(name)]; ok {
				return coll + "(" + "'" + strings.Trim(key, `'"`) + "'" + ")"
			}
		}
		if d := fieldDefs[strings.ToLower(name)]; d != nil && d.coll == 0 {
			return d.name
		}
		return name
	})
	what := "statement"
	if template {
		what = "template"
		fix = strings.NewReplacer("{{", "{", "}}", "}").Replace(fix)
	} else {
		fix = strings.NewReplacer("==", "=", "&&", "and", "||", "or").Replace(fix)
	}
	tok := src[loc[0]:loc[1]]
	return newError(src, loc[0], tok, "VKProxy's newer %s syntax (Request.Field, ==, &&) is not supported; write it as: %s", what, fix)
}
