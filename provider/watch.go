package provider

import (
	"bytes"
	"context"
	"os"
	"time"

	"k8s.io/klog/v2"

	"github.com/baremetal-ccm/baremetal-ccm/provider/config"
)

// configWatcher polls the cloud config file and applies each valid new
// version. Polling the content, not watching inotify events, also sees a
// ConfigMap update, which swaps a symlink above the file.
type configWatcher struct {
	path     string
	interval time.Duration
	apply    func(context.Context, *config.Config) error
	// last is the content last seen, applied or rejected: a rejected file is
	// reported once, not at every poll.
	last []byte
}

func (w *configWatcher) run(ctx context.Context) {
	logger := klog.FromContext(ctx).WithValues("cloudConfig", w.path)
	ctx = klog.NewContext(ctx, logger)
	w.last, _ = os.ReadFile(w.path)
	t := time.NewTicker(w.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			w.check(ctx)
		}
	}
}

func (w *configWatcher) check(ctx context.Context) {
	logger := klog.FromContext(ctx)
	data, err := os.ReadFile(w.path)
	if err != nil {
		logger.Error(err, "Cannot read the cloud config; the running config stays in force")
		return
	}
	if bytes.Equal(data, w.last) {
		return
	}
	w.last = data
	cfg, err := config.Parse(data)
	if err != nil {
		configReloads.WithLabelValues("invalid").Inc()
		logger.Error(err, "Rejected the changed cloud config; the running config stays in force")
		return
	}
	if err := w.apply(ctx, cfg); err != nil {
		configReloads.WithLabelValues("failed").Inc()
		logger.Error(err, "Could not apply the changed cloud config; the running config stays in force")
		return
	}
	configReloads.WithLabelValues("applied").Inc()
}
