package sandbox

import (
	"os"

	"github.com/opencontainers/cgroups"
	devconfig "github.com/opencontainers/cgroups/devices/config"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/specconv"
	"golang.org/x/sys/unix"
)

// Quotas, as Lambda's: CPU is proportional to memory, one full vCPU at
// 1792 MB.
const (
	cpuPeriodUs      = 100_000
	mbPerVCPU        = 1792
	minCPUQuotaUs    = 1_000 // the kernel's floor
	pidsLimit        = 1024
	nofileLimit      = 1024
	initCPUQuotaUs   = cpuPeriodUs // one vCPU while the runtime initialises
	sandboxOOMScoreA = 500         // sandboxes die before the agent on host OOM
)

// cpuQuotaUs is the CFS quota of a function with memMB of memory.
func cpuQuotaUs(memMB int) int64 {
	q := int64(memMB) * cpuPeriodUs / mbPerVCPU
	if q < minCPUQuotaUs {
		q = minCPUQuotaUs
	}
	return q
}

// containerSpec is what varies between sandboxes.
type containerSpec struct {
	rootfs string // the read-only image
	// The function's code (/var/task) and layers (/opt) are not here: they
	// are mounted when the sandbox is claimed (shell_linux.go).
	runtimeDir string // the runtime's shim, mounted read-only at /var/runtime ("" for none)
	netnsPath  string // pre-made namespace with loopback and the Runtime API
	cgroupPath string
	memoryMB   int
	hostname   string
	initBinary string // the agent's own executable, the sandbox's PID 1
	// procViews are lxcfs's files, by /proc name, mounted over the
	// kernel's (procviews_linux.go); empty where there is no lxcfs.
	procViews map[string]string
}

var memswSupported = func() bool {
	_, err := os.Stat("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")
	return err == nil
}()

func containerConfig(s containerSpec) *configs.Config {
	const noexec = unix.MS_NOEXEC | unix.MS_NOSUID | unix.MS_NODEV
	var devRules []*devconfig.Rule
	for _, d := range specconv.AllowedDevices {
		devRules = append(devRules, &d.Rule)
	}
	mem := int64(s.memoryMB) << 20
	res := &cgroups.Resources{
		Memory:    mem,
		CpuPeriod: cpuPeriodUs,
		CpuQuota:  initCPUQuotaUs,
		PidsLimit: ptr(int64(pidsLimit)),
		Devices:   devRules,
	}
	if memswSupported {
		res.MemorySwap = mem // no swap
	}
	mounts := []*configs.Mount{
		{Source: "proc", Destination: "/proc", Device: "proc", Flags: noexec},
		{Source: "tmpfs", Destination: "/dev", Device: "tmpfs", Flags: unix.MS_NOSUID | unix.MS_STRICTATIME, Data: "mode=755,size=65536k"},
		// /tmp is mounted when the sandbox is claimed (scratch_linux.go).
		// The sandbox's own cgroups, read-only, where runtimes that size
		// their heap from their limits (JVM, Node, .NET) read them.
		{Source: "cgroup", Destination: "/sys/fs/cgroup", Device: "cgroup",
			Flags: unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
		{Source: s.initBinary, Destination: initPath, Device: "bind",
			Flags: unix.MS_BIND | unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV},
	}
	const roBind = unix.MS_BIND | unix.MS_REC | unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV
	if s.runtimeDir != "" {
		mounts = append(mounts, &configs.Mount{Source: s.runtimeDir, Destination: "/var/runtime", Device: "bind", Flags: roBind})
	}
	for _, name := range procViewFiles {
		if src, ok := s.procViews[name]; ok {
			mounts = append(mounts, &configs.Mount{Source: src, Destination: "/proc/" + name, Device: "bind",
				Flags: unix.MS_BIND | unix.MS_RDONLY | noexec})
		}
	}
	return &configs.Config{
		Rootfs:          s.rootfs,
		Readonlyfs:      true,
		NoNewPrivileges: true,
		Hostname:        s.hostname,
		Capabilities:    &configs.Capabilities{}, // none at all
		OomScoreAdj:     ptr(sandboxOOMScoreA),
		Namespaces: configs.Namespaces{
			{Type: configs.NEWNS},
			{Type: configs.NEWUTS},
			{Type: configs.NEWIPC},
			{Type: configs.NEWPID},
			{Type: configs.NEWCGROUP},
			{Type: configs.NEWNET, Path: s.netnsPath},
		},
		Cgroups: &cgroups.Cgroup{
			Path:      s.cgroupPath,
			Resources: res,
		},
		Devices: specconv.AllowedDevices,
		Mounts:  mounts,
		MaskPaths: []string{
			"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
			"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
		},
		ReadonlyPaths: []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"},
		Rlimits: []configs.Rlimit{
			{Type: unix.RLIMIT_NOFILE, Hard: nofileLimit, Soft: nofileLimit},
			{Type: unix.RLIMIT_CORE, Hard: 0, Soft: 0}, // no core dumps, and none can be asked for
		},
	}
}

func ptr[T any](v T) *T { return &v }
