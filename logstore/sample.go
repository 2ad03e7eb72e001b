package logstore

import "fmt"

// SampleLine is the i-th of a family of log lines with the size and shape
// of a runtime's (about 150 bytes: a time, a request id, a level and a
// message with numbers), for the ingestion benchmarks of this package and
// of `nimbus bench logs`.
func SampleLine(i int) string {
	return fmt.Sprintf("2026-12-01T10:00:00.%03dZ\t6f1c2a4e-%04x-4d2b-9b7e-%012x\tINFO\tprocessed order %d for customer %d in %d ms, items=%d total=%d.%02d status=ok",
		i%1000, i%65536, i*7919, i, i*31%100000, i%250, i%17, i*13%10000, i%100)
}
