package proc

import (
	"os"
	"strings"
)

// LoadAverage is the machine's 1, 5 and 15 minute load average as uptime
// prints it ("0.52, 0.61, 0.70"), which benchmarks log beside their
// figures; "unknown (…)" when /proc/loadavg cannot be read.
func LoadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], ", ")
}
