package service

import (
	"context"
	"os"

	"github.com/headwaylabs/headway/brandguard"
	"github.com/headwaylabs/headway/consumer"
	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/outbox"
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
func (s *Service) AddConsumer(name string, cfg consumer.Config) (err error) {
	if cfg.Client == nil || s.isServiceRedis(cfg.Client) {
		rdb, rerr := s.Redis()
		if rerr != nil {
			return rerr
		}
		if rerr := s.reserveRedis(name, ConnsPerConsumer); rerr != nil {
			return rerr
		}
		defer func() { // err is the result: give the connections back when the worker is not added
			if err != nil {
				s.releaseRedis(ConnsPerConsumer)
			}
		}()
		cfg.Client = rdb
	}
	if cfg.Guard == nil && cfg.Catalog != nil {
		g, err := s.Guard(cfg.Catalog)
		if err != nil {
			return err
		}
		cfg.Guard = g
	}
	if cfg.Registerer == nil {
		cfg.Registerer = s.reg
	}
	if cfg.Logger == nil {
		cfg.Logger = s.log
	}
	c, err := consumer.New(cfg)
	if err != nil {
		return err
	}
	return s.Add(name, c)
}

// AddRelay builds an outbox relay from cfg and adds it as the worker
// name, with its checks. Zero fields of cfg take the service's: Client
// [Service.Redis], Pool [Service.Postgres] (unless cfg.Store is set),
// Registerer and Logger.
func (s *Service) AddRelay(ctx context.Context, name string, cfg outbox.RelayConfig) (err error) {
	if cfg.Client == nil || s.isServiceRedis(cfg.Client) {
		rdb, rerr := s.Redis()
		if rerr != nil {
			return rerr
		}
		if rerr := s.reserveRedis(name, ConnsPerRelay); rerr != nil {
			return rerr
		}
		defer func() { // err is the result: give the connections back when the worker is not added
			if err != nil {
				s.releaseRedis(ConnsPerRelay)
			}
		}()
		cfg.Client = rdb
	}
	if cfg.Store == nil && cfg.Pool == nil {
		db, err := s.Postgres(ctx)
		if err != nil {
			return err
		}
		cfg.Pool = db
	}
	if cfg.Registerer == nil {
		cfg.Registerer = s.reg
	}
	if cfg.Logger == nil {
		cfg.Logger = s.log
	}
	r, err := outbox.NewRelay(cfg)
	if err != nil {
		return err
	}
	return s.Add(name, r)
}
