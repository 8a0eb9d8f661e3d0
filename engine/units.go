package engine

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// parseDuration accepts .NET TimeSpan "c" forms ("hh:mm:ss", "hh:mm:ss.fffffff",
// "d.hh:mm:ss[.fffffff]", optional leading '-') as VKProxy configs use, and Go
// durations ("5s", "1m30s"). Negative values are rejected by callers.
func parseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("empty duration")
	}
	if !strings.Contains(s, ":") {
		d, err := time.ParseDuration(s)
		if err != nil {
			return 0, errors.New(`not a duration: use "hh:mm:ss" or a Go duration like "30s"`)
		}
		return d, nil
	}
	neg := false
	if s[0] == '-' {
		neg, s = true, s[1:]
	}
	var days int64
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return 0, errors.New(`not a TimeSpan: want "[d.]hh:mm:ss[.fffffff]"`)
	}
	h := parts[0]
	if i := strings.IndexByte(h, '.'); i >= 0 {
		d, err := strconv.ParseInt(h[:i], 10, 32)
		if err != nil || d < 0 || i == 0 {
			return 0, errors.New(`not a TimeSpan: bad day count`)
		}
		days, h = d, h[i+1:]
	}
	hours, err1 := strconv.ParseInt(h, 10, 32)
	mins, err2 := strconv.ParseInt(parts[1], 10, 32)
	secPart, frac, hasFrac := strings.Cut(parts[2], ".")
	secs, err3 := strconv.ParseInt(secPart, 10, 32)
	if err1 != nil || err2 != nil || err3 != nil || len(h) == 0 || len(parts[1]) != 2 || len(secPart) != 2 {
		return 0, errors.New(`not a TimeSpan: want "[d.]hh:mm:ss[.fffffff]"`)
	}
	if hours > 23 || mins > 59 || secs > 59 || hours < 0 || mins < 0 || secs < 0 {
		return 0, errors.New("not a TimeSpan: hours must be 0-23, minutes and seconds 0-59")
	}
	var nanos int64
	if hasFrac {
		if len(frac) == 0 || len(frac) > 7 {
			return 0, errors.New("not a TimeSpan: fraction must have 1 to 7 digits")
		}
		f, err := strconv.ParseInt(frac, 10, 64)
		if err != nil || f < 0 {
			return 0, errors.New("not a TimeSpan: bad fraction")
		}
		for i := len(frac); i < 9; i++ {
			f *= 10
		}
		nanos = f
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
