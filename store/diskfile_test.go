package store

import (
	"bytes"
	"testing"
)

func diskFile(key, val string, expires int64) []byte {
	return append(appendHeader(nil, []byte(key), []byte(val), expires), val...)
}

// FuzzDiskHeader feeds arbitrary bytes to the disk file decoder: it must
// never panic, and what it accepts must encode back to the same bytes.
func FuzzDiskHeader(f *testing.F) {
	f.Add(diskFile("GET|example.com|/", "HTTP/1.1 200 OK\r\n\r\nhello", 1<<62))
	f.Add(diskFile("", "", 0))
	f.Add(diskFile("k", "v", -1))
	f.Add(diskFile("k", "v", 1)[:diskHdrLen])
	f.Add([]byte(diskMagic))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		if h, err := parseHeader(b); err == nil && (h.keyLen < 0 || h.valLen < 0 || h.size() < diskHdrLen) {
			t.Fatalf("parseHeader accepted impossible lengths: %+v", h)
		}
		h, key, val, err := decodeFile(b)
		if err != nil {
			return
		}
		if again := append(appendHeader(nil, key, val, h.expires), val...); !bytes.Equal(again, b) {
			t.Fatalf("decoded %q / %q does not encode back to the same file", key, val)
		}
	})
}
