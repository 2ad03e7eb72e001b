package logstore

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
)

// recoverFuncLog reads the segments of one function's directory at Open: it
// checks every record, truncates each segment after its last valid one (a
// torn write at a crash) and finds the last Seq. The recent window starts
// empty; Reads of older lines go to the files.
func recoverFuncLog(name, dir string) (*funcLog, error) {
	fl := newFuncLog(name, dir)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("logstore: %w", err)
	}
	var segs []segment
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		if first, ok := parseSegmentName(e.Name()); ok {
			segs = append(segs, segment{first: first, path: segmentPath(dir, first)})
		}
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i].first < segs[j].first })

	sr := &segmentReader{r: bufio.NewReaderSize(nil, 64<<10)}
	var last uint64
	for i := range segs {
		if err := recoverSegment(&segs[i], last, sr); err != nil {
			return nil, err
		}
		if segs[i].hasRecords() {
			last = segs[i].last
		}
		fl.total += segs[i].size
	}
	// An empty last segment records the next Seq after the age retention
	// dropped every line.
	if n := len(segs); n > 0 && segs[n-1].first-1 > last {
		last = segs[n-1].first - 1
	}
	fl.segs, fl.lastSeq = segs, last
	return fl, nil
}

// recoverSegment fills in sg from its file, truncating the file after its
// last valid record. A record whose Seq does not follow prev (the last Seq
// of the segments before) and the one before it in sg counts as corrupt.
func recoverSegment(sg *segment, prev uint64, sr *segmentReader) error {
	sg.last, sg.maxMs = sg.first-1, math.MinInt64
	f, err := os.Open(sg.path)
	if err != nil {
		return fmt.Errorf("logstore: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("logstore: %w", err)
	}
	var magic [len(segmentMagic)]byte
	if n, _ := io.ReadFull(f, magic[:]); n < len(magic) {
		// Torn while being created: start it again.
		if string(magic[:n]) != segmentMagic[:n] {
			return fmt.Errorf("logstore: %s: not a log segment", sg.path)
		}
		if err := os.WriteFile(sg.path, []byte(segmentMagic), 0o644); err != nil {
			return fmt.Errorf("logstore: %w", err)
		}
		sg.size = int64(len(magic))
		return nil
	}
	if string(magic[:]) != segmentMagic {
		return fmt.Errorf("logstore: %s: not a log segment", sg.path)
	}

	sr.r.Reset(f)
	sr.off, sr.limit = int64(len(magic)), fi.Size()
	good := sr.off
	for {
		v, err := sr.next()
		if err != nil {
			break // io.EOF at the end, or a torn or corrupt record
		}
		if v.seq < sg.first || v.seq <= prev || (sg.hasRecords() && v.seq <= sg.last) {
			break
		}
		sg.last = v.seq
		sg.maxMs = max(sg.maxMs, v.timeMs)
		good = sr.off
	}
	if good < fi.Size() {
		if err := os.Truncate(sg.path, good); err != nil {
			return fmt.Errorf("logstore: truncate torn tail: %w", err)
		}
	}
	sg.size = good
	return nil
}
