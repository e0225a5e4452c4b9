package controlplane

import (
	"fmt"
	"net"
	"net/url"
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

// startEtcd runs a single-member etcd in dir that listens on loopback only.
func startEtcd(dir string) (*embeddedEtcd, string, error) {
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
	logger, err := logCfg.Build()
	if err != nil {
		return nil, "", err
	}
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(logger)
	// Compact history older than an hour, and stay well inside etcd's quota.
	cfg.AutoCompactionMode = "periodic"
	cfg.AutoCompactionRetention = "1h"

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, "", fmt.Errorf("start embedded etcd in %s: %w (if the data is damaged, restore %s from a backup)", dir, err, dir)
	}
	select {
	case <-e.Server.ReadyNotify():
		return &embeddedEtcd{etcd: e, logLevel: logCfg.Level}, clientURL.String(), nil
	case err := <-e.Err():
		logCfg.Level.SetLevel(zapcore.FatalLevel)
		e.Close()
		return nil, "", fmt.Errorf("embedded etcd in %s: %w", dir, err)
	case <-time.After(60 * time.Second):
		logCfg.Level.SetLevel(zapcore.FatalLevel)
		e.Close()
		return nil, "", fmt.Errorf("embedded etcd in %s did not become ready within 60s", dir)
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
