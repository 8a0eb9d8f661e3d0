package engine

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// parseDuration reads a duration as VKProxy configs write them, the .NET
// TimeSpan grammar (TimeSpan.Parse, invariant culture):
//
//	[-]d                        days: "10" is ten days
//	[-][d.]h:mm                 "1.02:30" is a day, two hours and a half
//	[-][d.]h:mm:ss[.fffffff]    "00:00:30", "00:00:00.250"
//	[-]d:h:mm:ss[.fffffff]      "1:02:00:00"
//
// with hours 0-23, minutes and seconds 0-59 (one or two digits each) and 1
// to 7 fraction digits; and Go durations ("5s", "1m30s"). Negative values
// are rejected by callers.
func parseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("empty duration")
	}
	if strings.IndexFunc(s, func(r rune) bool { return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' }) >= 0 {
		d, err := time.ParseDuration(s)
		if err != nil {
			return 0, errors.New(`not a duration: use a TimeSpan ("00:00:30", "1.00:00:00") or a Go duration ("30s")`)
		}
		return d, nil
	}
	const bad = `not a TimeSpan: want "d", "[d.]hh:mm[:ss[.fffffff]]" or "d:hh:mm:ss[.fffffff]"`
	neg := false
	if s[0] == '-' {
		neg, s = true, s[1:]
	}
	parts := strings.Split(s, ":")
	var days, hours, mins, secs, nanos int64
	var err error
	field := func(v string, max int64) int64 {
		if err != nil {
			return 0
		}
		if len(v) == 0 || len(v) > 2 || strings.Trim(v, "0123456789") != "" {
			err = errors.New(bad)
			return 0
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		if n > max {
			err = fmt.Errorf("not a TimeSpan: %q is out of range (hours 0-23, minutes and seconds 0-59)", v)
		}
		return n
	}
	number := func(v string) int64 {
		if err != nil {
			return 0
		}
		n, perr := strconv.ParseInt(v, 10, 64)
		if perr != nil || n < 0 || n > 10675199 || strings.Trim(v, "0123456789") != "" {
			err = errors.New(bad)
		}
		return n
	}
	// Seconds may carry the fraction.
	last := parts[len(parts)-1]
	if len(parts) >= 3 {
		if sec, frac, ok := strings.Cut(last, "."); ok {
			if len(frac) == 0 || len(frac) > 7 || strings.Trim(frac, "0123456789") != "" {
				return 0, errors.New("not a TimeSpan: the fraction has 1 to 7 digits")
			}
			f, _ := strconv.ParseInt(frac, 10, 64)
			for i := len(frac); i < 9; i++ {
				f *= 10
			}
			nanos, last = f, sec
		}
	}
	switch len(parts) {
	case 1: // d
		days = number(parts[0])
	case 2, 3: // [d.]hh:mm[:ss]
		h := parts[0]
		if d, rest, ok := strings.Cut(h, "."); ok {
			days, h = number(d), rest
		}
		hours = field(h, 23)
		if len(parts) == 2 {
			mins = field(last, 59)
		} else {
			mins, secs = field(parts[1], 59), field(last, 59)
		}
	case 4: // d:hh:mm:ss
		days = number(parts[0])
		hours, mins, secs = field(parts[1], 23), field(parts[2], 59), field(last, 59)
	default:
		return 0, errors.New(bad)
	}
	if err != nil {
		return 0, err
	}
	d := time.Duration(days)*24*time.Hour + time.Duration(hours)*time.Hour +
		time.Duration(mins)*time.Minute + time.Duration(secs)*time.Second + time.Duration(nanos)
	if neg {
		d = -d
	}
	return d, nil
}

// ParseSize reads "1048576", "64MiB", "512KiB", "1GiB" (KB/MB/GB and K/M/G
// are taken as powers of 1024 too, which is what people mean here).
func ParseSize(s string) (int, error) {
	t := strings.TrimSpace(s)
	mult := 1
	upper := strings.ToUpper(t)
	for _, u := range []struct {
		suffix string
		mult   int
	}{{"KIB", 1 << 10}, {"MIB", 1 << 20}, {"GIB", 1 << 30}, {"KB", 1 << 10}, {"MB", 1 << 20}, {"GB", 1 << 30}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1}} {
		if strings.HasSuffix(upper, u.suffix) {
			mult = u.mult
			t = strings.TrimSpace(t[:len(t)-len(u.suffix)])
			break
		}
	}
	n, err := strconv.Atoi(t)
	if err != nil || n < 0 || n > math.MaxInt32/mult {
		return 0, fmt.Errorf("%q is not a size like 1048576 or 64MiB", s)
	}
	return n * mult, nil
}
