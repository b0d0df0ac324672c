package service

import (
	"context"
	"log/slog"
	"os"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/thejerf/suture/v4"

	"github.com/headwaylabs/headway/brandguard"
	"github.com/headwaylabs/headway/consumer"
	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/outbox"
	"github.com/headwaylabs/headway/retention"
)

// Guard returns a brandguard.Guard for catalog in the mode of
// MULTI_BRAND_ENFORCEMENT (default enforce; an invalid value is an error),
// registering its metrics and logging with the service's.
func (s *Service) Guard(catalog *event.Catalog) (*brandguard.Guard, error) {
	mode, err := brandguard.ModeFromEnv(os.LookupEnv)
	if err != nil {
		return nil, err
	}
	return brandguard.New(brandguard.Config{Catalog: catalog, Mode: mode, Registerer: s.reg, Logger: s.log})
}

// WriterCheck is the readiness check AddWriter registers.
const WriterCheck = "outbox/writer"

// AddWriter registers the outbox writer's readiness check (WriterCheck):
// not ready for a while after a producer brand violation
// (outbox.Writer.Check).
func (s *Service) AddWriter(w *outbox.Writer) error {
	return s.probes.AddReadinessCheck(WriterCheck, w.Check)
}

// AddConsumer builds a consumer from cfg and adds it as the worker name,
// with its checks ([Service.Add]). Zero fields of cfg take the service's:
// Client [Service.Redis], Guard [Service.Guard] of cfg.Catalog,
// Registerer and Logger; the rest keep consumer.Config's defaults.
func (s *Service) AddConsumer(name string, cfg consumer.Config) error {
	return s.addOnRedis(name, cfg.Client, ConnsPerConsumer, func(rdb redis.UniversalClient) (suture.Service, error) {
		cfg.Client = rdb
		if cfg.Guard == nil && cfg.Catalog != nil {
			g, err := s.Guard(cfg.Catalog)
			if err != nil {
				return nil, err
			}
			cfg.Guard = g
		}
		s.fillObservability(&cfg.Registerer, &cfg.Logger)
		return consumer.New(cfg)
	})
}

// AddRelay builds an outbox relay from cfg and adds it as the worker
// name, with its checks. Zero fields of cfg take the service's: Client
// [Service.Redis], Pool [Service.Postgres] (unless cfg.Store is set),
// Registerer and Logger.
func (s *Service) AddRelay(ctx context.Context, name string, cfg outbox.RelayConfig) error {
	return s.addOnRedis(name, cfg.Client, ConnsPerRelay, func(rdb redis.UniversalClient) (suture.Service, error) {
		cfg.Client = rdb
		if cfg.Store == nil && cfg.Pool == nil {
			db, err := s.Postgres(ctx)
			if err != nil {
				return nil, err
			}
			cfg.Pool = db
		}
		s.fillObservability(&cfg.Registerer, &cfg.Logger)
		return outbox.NewRelay(cfg)
	})
}

// addOnRedis builds a worker with build and adds it as name. A worker
// with no client, or with the service's own, gets the service's client
// with n of its pool's connections reserved, given back when the build or
// the add fails.
func (s *Service) addOnRedis(name string, client redis.UniversalClient, n int,
	build func(redis.UniversalClient) (suture.Service, error)) error {
	if client != nil && !s.isServiceRedis(client) {
		return s.buildAndAdd(name, client, build)
	}
	rdb, err := s.Redis()
	if err != nil {
		return err
	}
	if err := s.reserveRedis(name, n); err != nil {
		return err
	}
	if err := s.buildAndAdd(name, rdb, build); err != nil {
		s.releaseRedis(n)
		return err
	}
	return nil
}

func (s *Service) buildAndAdd(name string, client redis.UniversalClient,
	build func(redis.UniversalClient) (suture.Service, error)) error {
	w, err := build(client)
	if err != nil {
		return err
	}
	return s.Add(name, w)
}

// fillObservability sets a worker's zero registerer and logger to the
// service's.
func (s *Service) fillObservability(reg *prometheus.Registerer, log **slog.Logger) {
	if *reg == nil {
		*reg = s.reg
	}
	if *log == nil {
		*log = s.log
	}
}

// AddRetention builds a retention.Keeper from cfg and schedules its jobs,
// one per stream (retention.JobName), with their checks; it returns the
// keeper for its status. Zero fields of cfg take the service's: Client
// [Service.Redis] (one connection of its pool reserved per stream: the
// jobs may run at once), Registerer and Logger. A job that cannot be
// added fails the call, leaving the jobs added before it scheduled.
func (s *Service) AddRetention(cfg retention.KeeperConfig) (*retention.Keeper, error) {
	reserved := 0
	if cfg.Client == nil || s.isServiceRedis(redisClientOf(cfg.Client)) {
		rdb, err := s.Redis()
		if err != nil {
			return nil, err
		}
		if err := s.reserveRedis("retention", len(cfg.Streams)); err != nil {
			return nil, err
		}
		cfg.Client, reserved = rdb, len(cfg.Streams)
	}
	s.fillObservability(&cfg.Registerer, &cfg.Logger)
	k, err := retention.NewKeeper(cfg)
	if err != nil {
		s.releaseRedis(reserved)
		return nil, err
	}
	for _, job := range k.Jobs() {
		if _, err := s.AddJob(job); err != nil {
			return nil, err
		}
	}
	return k, nil
}

// redisClientOf returns c as a client of the kind isServiceRedis knows,
// or nil.
func redisClientOf(c redis.Scripter) redis.UniversalClient {
	u, _ := c.(redis.UniversalClient)
	return u
}
