package controlplane

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// embeddedEtcd is a single-member etcd inside this process.
type embeddedEtcd struct {
	etcd *embed.Etcd
	// logLevel is raised before closing: etcd logs its listeners' expected
	// "server closed" errors while it shuts down.
	logLevel zap.AtomicLevel
}

// Close stops etcd and waits until it has stopped.
func (e *embeddedEtcd) Close() {
	e.logLevel.SetLevel(zapcore.FatalLevel)
	e.etcd.Close()
	<-e.etcd.Server.StopNotify()
}

// etcdReadyTimeout bounds etcd's start: a store whose write-ahead log lost
// entries the database had applied starts, but never becomes ready.
const etcdReadyTimeout = 60 * time.Second

// startEtcd runs a single-member etcd in dir that listens on loopback only.
// The start is bounded by etcdReadyTimeout and by ctx: a damaged store is
// reported as an error, whether etcd fails, panics while it bootstraps, or
// never becomes ready. After a failed start etcd's goroutines may still be
// stuck; the caller is expected to end the process.
func startEtcd(ctx context.Context, dir string) (*embeddedEtcd, string, error) {
	clientURL, err := loopbackURL()
	if err != nil {
		return nil, "", err
	}
	peerURL, err := loopbackURL()
	if err != nil {
		return nil, "", err
	}
	cfg := embed.NewConfig()
	cfg.Name = "stella"
	cfg.Dir = dir
	cfg.ListenClientUrls = []url.URL{*clientURL}
	cfg.AdvertiseClientUrls = []url.URL{*clientURL}
	cfg.ListenPeerUrls = []url.URL{*peerURL}
	cfg.AdvertisePeerUrls = []url.URL{*peerURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	logCfg := zap.NewProductionConfig()
	logCfg.Level = zap.NewAtomicLevelAt(zapcore.ErrorLevel)
	// The error says what failed; etcd's stack traces only hide it.
	logCfg.DisableStacktrace = true
	logger, err := logCfg.Build()
	if err != nil {
		return nil, "", err
	}
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(logger)
	// Compact history older than an hour, and stay well inside etcd's quota.
	cfg.AutoCompactionMode = "periodic"
	cfg.AutoCompactionRetention = "1h"

	damaged := func(err error) error {
		return fmt.Errorf("start embedded etcd in %s: %w; its write-ahead log (%s) or database may be damaged: "+
			"restore the data directory from a backup (stella snapshot restore FILE --data-dir DIR)",
			dir, err, filepath.Join(dir, "member", "wal"))
	}
	type started struct {
		etcd *embed.Etcd
		err  error
	}
	startedCh := make(chan started, 1)
	go func() {
		// etcd panics on some damaged write-ahead logs while it
		// bootstraps in this goroutine.
		defer func() {
			if r := recover(); r != nil {
				startedCh <- started{err: fmt.Errorf("etcd failed while reading its data: %v", r)}
			}
		}()
		e, err := embed.StartEtcd(cfg)
		startedCh <- started{etcd: e, err: err}
	}()
	deadline := time.NewTimer(etcdReadyTimeout)
	defer deadline.Stop()
	stopped := func() error {
		return fmt.Errorf("stopped while embedded etcd in %s was starting: %w", dir, context.Cause(ctx))
	}
	var e *embed.Etcd
	select {
	case s := <-startedCh:
		if s.err != nil {
			return nil, "", damaged(s.err)
		}
		e = s.etcd
	case <-ctx.Done():
		return nil, "", stopped()
	case <-deadline.C:
		return nil, "", damaged(fmt.Errorf("etcd did not start within %s", etcdReadyTimeout))
	}
	running := &embeddedEtcd{etcd: e, logLevel: logCfg.Level}
	select {
	case <-e.Server.ReadyNotify():
		return running, clientURL.String(), nil
	case err := <-e.Err():
		running.abandon()
		return nil, "", damaged(err)
	case <-ctx.Done():
		running.abandon()
		return nil, "", stopped()
	case <-deadline.C:
		running.abandon()
		return nil, "", damaged(fmt.Errorf("etcd did not become ready within %s", etcdReadyTimeout))
	}
}

// abandon closes an etcd that failed to start, waiting a little for it:
// closing an etcd that never became ready can block forever.
func (e *embeddedEtcd) abandon() {
	e.logLevel.SetLevel(zapcore.FatalLevel)
	closed := make(chan struct{})
	go func() {
		e.etcd.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
	}
}

// loopbackURL picks a free port on 127.0.0.1.
func loopbackURL() (*url.URL, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("find a free loopback port for etcd: %w", err)
	}
	defer l.Close()
	return &url.URL{Scheme: "http", Host: l.Addr().String()}, nil
}
