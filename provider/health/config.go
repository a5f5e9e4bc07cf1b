package health

import (
	"fmt"
	"net/url"
	"strings"
	"time"
	"unicode"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Defaults of the `healthCheck:` section: kube-proxy's healthz, probed every
// second, two answers in a row to change a node's state. A dead node is then
// found within Interval + Timeout + (UnhealthyThreshold-1) × Timeout/2 =
// 1.75 s (see [Checker]).
const (
	DefaultPort               = 10256
	DefaultPath               = "/healthz"
	DefaultInterval           = time.Second
	DefaultTimeout            = 500 * time.Millisecond
	DefaultUnhealthyThreshold = 2
	DefaultHealthyThreshold   = 2
)

// ConfigFile is the `healthCheck:` section of the cloud config as written by
// the operator. An absent or zero field takes its default; the caller
// decodes strictly (unknown fields are errors).
type ConfigFile struct {
	// Enabled turns the checks off when false: every node is then healthy
	// and nothing is probed. Default true.
	Enabled *bool `json:"enabled,omitempty"`
	// Port is the TCP port probed on every node. Default 10256, kube-proxy's
	// --healthz-bind-address.
	Port int32 `json:"port,omitempty"`
	// Path is the URL path probed. Default /healthz.
	Path string `json:"path,omitempty"`
	// Interval is the time between the starts of two probes of a node.
	// Default 1s. A node's probes share a connection, a new one every
	// fifth probe, so a node that accepts no new connection is found
	// within about 5 × Interval (see [Checker]).
	Interval *metav1.Duration `json:"interval,omitempty"`
	// Timeout is how long a probe may take, connection included; it must
	// be less than Interval. Default 500ms.
	Timeout *metav1.Duration `json:"timeout,omitempty"`
	// UnhealthyThreshold is the number of failed probes in a row that make
	// a healthy node unhealthy. Default 2.
	UnhealthyThreshold int32 `json:"unhealthyThreshold,omitempty"`
	// HealthyThreshold is the number of successful probes in a row that
	// make an unhealthy node healthy again. Default 2.
	HealthyThreshold int32 `json:"healthyThreshold,omitempty"`
}

// Config is a validated health check configuration with every default
// applied. The zero Config is disabled.
type Config struct {
	Enabled bool
	// Port is kube-proxy's healthz port. The [Checker] does not read it:
	// the caller builds each node's target from the node's address and
	// Port (see [Checker.SetTargets]).
	Port               int32
	Path               string
	Interval, Timeout  time.Duration
	UnhealthyThreshold int
	HealthyThreshold   int
}

// DefaultConfig is the configuration of a cloud config without a
// `healthCheck:` section.
func DefaultConfig() Config {
	return Config{
		Enabled:            true,
		Port:               DefaultPort,
		Path:               DefaultPath,
		Interval:           DefaultInterval,
		Timeout:            DefaultTimeout,
		UnhealthyThreshold: DefaultUnhealthyThreshold,
		HealthyThreshold:   DefaultHealthyThreshold,
	}
}

// Parse applies the defaults and validates the section found at path (for
// example healthCheck), reporting every problem at once, each with its field
// path, the offending value and what would be valid. A nil *ConfigFile gives
// [DefaultConfig]. The fields of a disabled section are validated too: a
// mistake is better found before the checks are turned back on.
func (f *ConfigFile) Parse(path *field.Path) (Config, field.ErrorList) {
	cfg := DefaultConfig()
	if f == nil {
		return cfg, nil
	}
	var errs field.ErrorList
	if f.Enabled != nil {
		cfg.Enabled = *f.Enabled
	}

	switch {
	case f.Port == 0:
	case f.Port < 1 || f.Port > 65535:
		errs = append(errs, field.Invalid(path.Child("port"), f.Port, fmt.Sprintf("must be a TCP port 1-65535 (default %d, kube-proxy's healthz)", DefaultPort)))
	default:
		cfg.Port = f.Port
	}

	if f.Path != "" {
		if msg := checkPath(f.Path); msg != "" {
			errs = append(errs, field.Invalid(path.Child("path"), f.Path, msg))
		} else {
			cfg.Path = f.Path
		}
	}

	intervalOK, timeoutOK := true, true
	if f.Interval != nil {
		if d := f.Interval.Duration; d <= 0 {
			intervalOK = false
			errs = append(errs, field.Invalid(path.Child("interval"), d.String(), fmt.Sprintf("must be positive (default %s)", DefaultInterval)))
		} else {
			cfg.Interval = d
		}
	}
	if f.Timeout != nil {
		if d := f.Timeout.Duration; d <= 0 {
			timeoutOK = false
			errs = append(errs, field.Invalid(path.Child("timeout"), d.String(), fmt.Sprintf("must be positive and less than interval (default %s)", DefaultTimeout)))
		} else {
			cfg.Timeout = d
		}
	}
	if intervalOK && timeoutOK && cfg.Timeout >= cfg.Interval {
		msg := fmt.Sprintf("must be less than interval (%s): a probe must end before the next one starts", cfg.Interval)
		if f.Timeout == nil {
			msg += fmt.Sprintf("; %s is the default, set a shorter timeout", DefaultTimeout)
		}
		errs = append(errs, field.Invalid(path.Child("timeout"), cfg.Timeout.String(), msg))
	}

	var thErrs field.ErrorList
	cfg.UnhealthyThreshold, thErrs = threshold(path.Child("unhealthyThreshold"), f.UnhealthyThreshold, DefaultUnhealthyThreshold)
	errs = append(errs, thErrs...)
	cfg.HealthyThreshold, thErrs = threshold(path.Child("healthyThreshold"), f.HealthyThreshold, DefaultHealthyThreshold)
	errs = append(errs, thErrs...)

	return cfg, errs
}

// threshold returns v, or def when v is 0 (absent).
func threshold(path *field.Path, v int32, def int) (int, field.ErrorList) {
	switch {
	case v == 0:
		return def, nil
	case v < 1:
		return def, field.ErrorList{field.Invalid(path, v, fmt.Sprintf("must be at least 1 (default %d)", def))}
	}
	return int(v), nil
}

// checkPath tells what is wrong with p as the path of a probe URL, or "".
func checkPath(p string) string {
	const want = "must be an absolute URL path such as " + DefaultPath
	if !strings.HasPrefix(p, "/") {
		return want + ": it must start with /"
	}
	if strings.ContainsFunc(p, unicode.IsSpace) || strings.Contains(p, "#") {
		return want + ": no spaces and no fragment (#)"
	}
	if _, err := url.ParseRequestURI(p); err != nil {
		return want + ": " + err.Error()
	}
	return ""
}

// withDefaults fills the fields a Config that did not come from Parse may
// lack, so that a hand-built Config never makes a probe loop spin.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Path == "" {
		c.Path = d.Path
	}
	if c.Interval <= 0 {
		c.Interval = d.Interval
	}
	if c.Timeout <= 0 {
		c.Timeout = min(d.Timeout, c.Interval)
	}
	if c.UnhealthyThreshold < 1 {
		c.UnhealthyThreshold = d.UnhealthyThreshold
	}
	if c.HealthyThreshold < 1 {
		c.HealthyThreshold = d.HealthyThreshold
	}
	return c
}

// fastInterval is the time between the starts of two probes of a node in
// doubt: half the timeout, so that a second probe of a node that does not
// answer starts before the first one times out. At least a millisecond.
func (c Config) fastInterval() time.Duration {
	return max(c.Timeout/2, time.Millisecond)
}
