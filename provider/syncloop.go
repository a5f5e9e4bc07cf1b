package provider

import (
	"context"
	"time"

	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
)

const syncKey = "all"

// syncLoop runs a sync after every trigger, at most every
// minSyncInterval (what arrives meanwhile is one more sync, not many),
// every resyncEvery, and again with exponential backoff after a failure
// (the periodic syncs pause meanwhile, so as not to cut the backoff
// short). The announcer and the route syncer each run one: the route
// syncer's syncs are whole-state, the announcer's cover what changed
// (see syncChanges), and its periodic ones a slice of the whole state
// each (see verifyDirty).
type syncLoop struct {
	name string
	sync func(context.Context) error
	// queue holds the one key syncKey: a trigger adds it at once, a failed
	// sync adds it again with exponential backoff.
	queue workqueue.TypedRateLimitingInterface[string]
	// resyncEvery is the time between two periodic syncs
	// (resyncInterval unless set before run).
	resyncEvery time.Duration
	// beforeResync, when set, is called before each periodic sync: the
	// announcer marks the next slice of its re-assertion.
	beforeResync func()
}

func newSyncLoop(name string, sync func(context.Context) error) *syncLoop {
	return &syncLoop{name: name, sync: sync, resyncEvery: resyncInterval, queue: workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedItemExponentialFailureRateLimiter[string](minSyncInterval, maxRetryDelay),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: name})}
}

// Trigger asks for a sync soon. It never blocks.
func (l *syncLoop) Trigger() { l.queue.Add(syncKey) }

// run waits for the informers, then syncs until ctx ends.
func (l *syncLoop) run(ctx context.Context, hasSynced ...cache.InformerSynced) {
	ctx = klog.NewContext(ctx, klog.FromContext(ctx).WithName(l.name))
	go func() {
		<-ctx.Done()
		l.queue.ShutDown()
	}()
	if !cache.WaitForCacheSync(ctx.Done(), hasSynced...) {
		return
	}
	go l.resync(ctx)
	l.Trigger()
	for l.processNext(ctx) {
	}
}

func (l *syncLoop) resync(ctx context.Context) {
	t := time.NewTicker(l.resyncEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if l.queue.NumRequeues(syncKey) > 0 {
				// The last sync failed, and its retry waits out its
				// backoff: a periodic sync would cut it short.
				continue
			}
			if l.beforeResync != nil {
				l.beforeResync()
			}
			l.Trigger()
		}
	}
}

// processNext runs one sync; false once the queue is shut down.
func (l *syncLoop) processNext(ctx context.Context) bool {
	key, shutdown := l.queue.Get()
	if shutdown {
		return false
	}
	if err := l.sync(ctx); err != nil {
		klog.FromContext(ctx).Error(err, "Sync failed; retrying with backoff", "retries", l.queue.NumRequeues(key))
		l.queue.AddRateLimited(key)
	} else {
		l.queue.Forget(key)
	}
	l.queue.Done(key)
	select {
	case <-ctx.Done():
	case <-time.After(minSyncInterval):
	}
	return true
}
