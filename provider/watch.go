package provider

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"k8s.io/klog/v2"

	"github.com/baremetal-ccm/baremetal-ccm/provider/config"
)

// passwordFileLimit bounds what the watcher reads of a password file to
// see whether it changed. TCP MD5 keys are at most 80 bytes; the speaker
// refuses longer ones.
const passwordFileLimit = 4 << 10

// maxApplyBackoff caps the wait between two attempts to apply the same
// content after the apply failed.
const maxApplyBackoff = 5 * time.Minute

// configWatcher polls the cloud config file, and the password files it
// names, and applies each valid new version. Polling the content, not
// watching inotify events, also sees a ConfigMap or Secret update, which
// swaps a symlink above the file.
//
// Content that is rejected is read and checked again at every poll: a
// ConfigMap and the Secret it names update independently, so a config
// naming a password file that does not exist yet becomes valid without
// changing. A rejection is logged once per distinct content and error, not
// at every poll.
type configWatcher struct {
	path     string
	interval time.Duration
	apply    func(context.Context, *config.Config) error

	// applied identifies what is in force: the file's content and the
	// content of every password file it names (see fingerprint).
	applied string
	// reported is the last problem logged, so that it is logged once;
	// warned is the fingerprint whose warnings were logged.
	reported string
	warned   string
	// failed is the fingerprint whose apply failed last, failures how
	// many times in a row, and retryAt when to try it again.
	failed   string
	failures int
	retryAt  time.Time
}

func (w *configWatcher) run(ctx context.Context) {
	logger := klog.FromContext(ctx).WithValues("cloudConfig", w.path)
	ctx = klog.NewContext(ctx, logger)
	// The provider loaded the file just before: what is there now is
	// taken as in force.
	if data, err := config.ReadFile(w.path, config.MaxFileSize); err == nil {
		if cfg, err := config.Parse(data); err == nil {
			w.applied = fingerprint(data, cfg)
		}
	}
	t := time.NewTicker(w.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			w.check(ctx, now)
		}
	}
}

// check reads the file and the password files it names, and applies them
// if they differ from what is in force.
func (w *configWatcher) check(ctx context.Context, now time.Time) {
	logger := klog.FromContext(ctx)
	data, err := config.ReadFile(w.path, config.MaxFileSize)
	if err != nil {
		configStale.Set(1)
		if w.report("unreadable\x00" + err.Error()) {
			logger.Error(err, "Cannot read the cloud config; the running config stays in force")
		}
		return
	}
	cfg, err := config.Parse(data)
	if err != nil {
		configStale.Set(1)
		if w.report("invalid\x00" + digest(data) + "\x00" + err.Error()) {
			configReloads.WithLabelValues("invalid").Inc()
			logger.Error(err, "Rejected the cloud config; the running config stays in force, and the file is checked again at every poll")
		}
		return
	}
	fp := fingerprint(data, cfg)
	if fp == w.applied {
		configStale.Set(0)
		w.reported = "" // a later problem is new again
		return
	}
	if fp == w.failed && now.Before(w.retryAt) {
		return
	}
	if fp != w.warned {
		w.warned = fp
		for _, warning := range cfg.Warnings {
			logger.Info("Warning: " + warning)
		}
	}
	if err := w.apply(ctx, cfg); err != nil {
		configStale.Set(1)
		if fp != w.failed {
			w.failed, w.failures = fp, 0
		}
		w.failures++
		backoff := min(w.interval<<min(w.failures-1, 16), maxApplyBackoff)
		w.retryAt = now.Add(backoff)
		if w.report("failed\x00" + fp + "\x00" + err.Error()) {
			configReloads.WithLabelValues("failed").Inc()
			logger.Error(err, "Could not apply the changed cloud config; the running config stays in force, and applying is retried", "retryIn", backoff)
		}
		return
	}
	w.applied, w.reported, w.failed, w.failures = fp, "", "", 0
	configStale.Set(0)
	configReloads.WithLabelValues("applied").Inc()
}

// report records problem as the last one logged, and tells whether it is
// new, that is, whether to log it.
func (w *configWatcher) report(problem string) bool {
	if problem == w.reported {
		return false
	}
	w.reported = problem
	return true
}

// fingerprint identifies a config as the speaker would apply it: the
// file's content and the content of every password file it names, so that
// a rotated Secret is applied like a changed ConfigMap.
func fingerprint(data []byte, cfg *config.Config) string {
	h := sha256.New()
	fmt.Fprintf(h, "%d:%s", len(data), data)
	for _, file := range cfg.PasswordFiles() {
		pw, err := config.ReadFile(file, passwordFileLimit)
		if err != nil {
			// Changes from one error to another, or back to content,
			// count as changes.
			pw = []byte("error: " + err.Error())
		}
		fmt.Fprintf(h, "%d:%s%d:%s", len(file), file, len(pw), pw)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func digest(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}
