package store

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
)

// The disk store's file format, version 1. All integers are little endian.
//
//	offset size
//	0      4    magic "vkpD"
//	4      1    format version (1)
//	5      1    flags, 0 in version 1
//	6      2    key length
//	8      8    expiry, unix nanoseconds
//	16     8    value length
//	24     4    CRC-32C (Castagnoli) of bytes 0..23, the key and the value
//	28          key, then value
//
// The CRC covers the header's fields too, so a flipped expiry or length is
// caught like a flipped value byte. A file whose size is not exactly
// 28 + key length + value length is torn (a crash before the data reached
// the disk) and, like one that fails its CRC, counts as absent.
const (
	diskMagic   = "vkpD"
	diskVersion = 1
	diskHdrLen  = 28
	diskCRCOff  = 24
)

var (
	crcTable = crc32.MakeTable(crc32.Castagnoli)

	errCorrupt = errors.New("store: disk: corrupt file")
)

// diskHeader is a file's fixed header, decoded.
type diskHeader struct {
	keyLen  int
	expires int64 // unix nanoseconds
	valLen  int64
	crc     uint32
}

// size is the length of the file the header describes.
func (h diskHeader) size() int64 { return diskHdrLen + int64(h.keyLen) + h.valLen }

// appendHeader appends a file's header and key to dst. The CRC covers val,
// which the caller writes right after.
func appendHeader(dst, key, val []byte, expires int64) []byte {
	start := len(dst)
	dst = append(dst, diskMagic...)
	dst = append(dst, diskVersion, 0)
	dst = binary.LittleEndian.AppendUint16(dst, uint16(len(key)))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(expires))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(len(val)))
	crc := crc32.Update(0, crcTable, dst[start:])
	crc = crc32.Update(crc, crcTable, key)
	crc = crc32.Update(crc, crcTable, val)
	dst = binary.LittleEndian.AppendUint32(dst, crc)
	return append(dst, key...)
}

// parseHeader decodes the fixed header at the start of b. It checks what the
// header alone can tell (magic, version, flags, a representable length);
// the caller checks the file's size and, when it has the data, the CRC.
func parseHeader(b []byte) (diskHeader, error) {
	if len(b) < diskHdrLen || string(b[:4]) != diskMagic || b[4] != diskVersion || b[5] != 0 {
		return diskHeader{}, errCorrupt
	}
	h := diskHeader{
		keyLen:  int(binary.LittleEndian.Uint16(b[6:])),
		expires: int64(binary.LittleEndian.Uint64(b[8:])),
		crc:     binary.LittleEndian.Uint32(b[diskCRCOff:]),
	}
	v := binary.LittleEndian.Uint64(b[16:])
	if v > 1<<62 {
		return diskHeader{}, errCorrupt
	}
	h.valLen = int64(v)
	return h, nil
}

// decodeFile checks a whole file's bytes and returns its key and value,
// both subslices of b.
func decodeFile(b []byte) (h diskHeader, key, val []byte, err error) {
	if h, err = parseHeader(b); err != nil {
		return h, nil, nil, err
	}
	if int64(len(b)) != h.size() {
		return h, nil, nil, errCorrupt
	}
	key = b[diskHdrLen : diskHdrLen+h.keyLen]
	val = b[diskHdrLen+h.keyLen:]
	crc := crc32.Update(0, crcTable, b[:diskCRCOff])
	crc = crc32.Update(crc, crcTable, b[diskHdrLen:])
	if crc != h.crc {
		return h, nil, nil, errCorrupt
	}
	return h, key, val, nil
}
