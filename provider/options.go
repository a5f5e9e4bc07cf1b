package provider

import "time"

// Options configure [New].
type Options struct {
	// ConfigFile is the cloud config (--cloud-config).
	ConfigFile string
	// ReloadInterval is how often the file is checked for changes; a
	// ConfigMap update reaches a mounted file within a minute or so, and is
	// applied by the next check. Zero: never reload.
	ReloadInterval time.Duration
}
