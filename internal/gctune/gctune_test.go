package gctune

import (
	"runtime"
	"testing"
)

func TestGCPercent(t *testing.T) {
	const mb = 1 << 20
	for _, tc := range []struct {
		name      string
		busy      bool
		live, cap uint64
		want      int
	}{
		{"idle keeps the default", false, 100 * mb, 6000 * mb, idlePercent},
		{"busy with room grows the heap goal", true, 100 * mb, 6000 * mb, busyPercent},
		{"busy near the cap grows it as far as the cap", true, 2000 * mb, 6000 * mb, 200},
		{"busy at half the cap keeps the default", true, 3000 * mb, 6000 * mb, idlePercent},
		{"busy past the cap keeps the default", true, 7000 * mb, 6000 * mb, idlePercent},
		{"unknown memory keeps the default", true, 100 * mb, 0, idlePercent},
		{"nothing live yet keeps the default", true, 0, 6000 * mb, idlePercent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := gcPercent(tc.busy, tc.live, tc.cap); got != tc.want {
				t.Errorf("gcPercent(%v, %d MB, %d MB) = %d, want %d", tc.busy, tc.live/mb, tc.cap/mb, got, tc.want)
			}
		})
	}
}

func TestMemoryTotal(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc/meminfo")
	}
	if got := memoryTotal(); got < 64<<20 {
		t.Errorf("memoryTotal() = %d bytes: not this machine's memory", got)
	}
}
