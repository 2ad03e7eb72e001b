package node

import "golang.org/x/sys/unix"

// hostMemoryMB is the machine's total memory.
func hostMemoryMB() int {
	var si unix.Sysinfo_t
	if err := unix.Sysinfo(&si); err != nil {
		return 4096
	}
	return int(uint64(si.Totalram) * uint64(si.Unit) >> 20)
}
