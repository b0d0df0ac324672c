package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"

	"github.com/headwaylabs/headway/brandguard"
	"github.com/headwaylabs/headway/event"
	"github.com/headwaylabs/headway/outbox"
	"github.com/headwaylabs/headway/outbox/sqliteoutbox"
	"github.com/headwaylabs/headway/platform"
	"github.com/headwaylabs/headway/readiness"
)

// brands are the demo's three brands.
var brands = []event.BrandID{1, 2, 3}

// directory knows every player's brand: the target brand a consumer checks
// an event's envelope brand against.
type directory struct{ brand map[string]event.BrandID }

func newDirectory(perBrand int) *directory {
	d := &directory{brand: map[string]event.BrandID{}}
	for _, b := range brands {
		for i := range perBrand {
			d.brand[playerID(b, i)] = b
		}
	}
	return d
}

func playerID(b event.BrandID, i int) string { return fmt.Sprintf("p%d-%03d", b, i) }

// betPayload is the payload of the bet events.
type betPayload struct {
	BetID       string `json:"bet_id"`
	PlayerID    string `json:"player_id"`
	AmountCents int64  `json:"amount_cents"`
}

// transferPayload is the payload of deposits, withdrawals and rolling
// completions.
type transferPayload struct {
	ID          string `json:"id"`
	PlayerID    string `json:"player_id"`
	AmountCents int64  `json:"amount_cents"`
}

// op is one business operation: rows to change and the events that must
// commit with them.
type op struct {
	kind     string // settle, rollback, deposit, withdraw, rolling
	id       string // bet or transfer id
	playerID string
	brand    event.BrandID
	amount   int64
	envs     []event.Envelope
}

// walletDB is where the wallet keeps its rows and its outbox: both in one
// transaction.
type walletDB interface {
	// apply writes op's business rows and outbox rows in one transaction.
	// For a rollback it reports false, writing nothing, when the bet is not
	// settled (already rolled back).
	apply(ctx context.Context, o op) (bool, error)
	// store is the outbox store the relay reads.
	store() outbox.Store
	close()
}

// sqliteWallet is the embedded wallet database.
type sqliteWallet struct {
	db *sql.DB
	s  *sqliteoutbox.Store
	w  *sqliteoutbox.Writer
}

func openSQLiteWallet(ctx context.Context, path string, w *outbox.Writer) (*sqliteWallet, error) {
	db, err := sqliteoutbox.Open(path)
	if err != nil {
		return nil, err
	}
	s, err := sqliteoutbox.New(sqliteoutbox.Config{DB: db})
	if err == nil {
		err = s.Migrate(ctx)
	}
	if err == nil {
		_, err = db.ExecContext(ctx, walletSchema)
	}
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	return &sqliteWallet{db: db, s: s, w: sqliteoutbox.NewWriter(w, s)}, nil
}

// walletSchema is the wallet's business tables, in SQL both databases take.
const walletSchema = `
CREATE TABLE IF NOT EXISTS wallet_bets (
    id           TEXT PRIMARY KEY,
    player_id    TEXT NOT NULL,
    brand_id     BIGINT NOT NULL,
    amount_cents BIGINT NOT NULL,
    status       TEXT NOT NULL,
    UNIQUE (id, brand_id)
);
CREATE TABLE IF NOT EXISTS wallet_transfers (
    id           TEXT PRIMARY KEY,
    kind         TEXT NOT NULL,
    player_id    TEXT NOT NULL,
    brand_id     BIGINT NOT NULL,
    amount_cents BIGINT NOT NULL
);`

func (w *sqliteWallet) apply(ctx context.Context, o op) (bool, error) {
	tx, err := w.db.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer func() { _ = tx.Rollback() }()
	var res sql.Result
	switch o.kind {
	case "settle":
		res, err = tx.ExecContext(ctx, `INSERT INTO wallet_bets (id, player_id, brand_id, amount_cents, status)
			VALUES (?, ?, ?, ?, 'settled')`, o.id, o.playerID, int64(o.brand), o.amount)
	case "rollback":
		res, err = tx.ExecContext(ctx, `UPDATE wallet_bets SET status = 'rolled_back' WHERE id = ? AND status = 'settled'`, o.id)
	default:
		res, err = tx.ExecContext(ctx, `INSERT INTO wallet_transfers (id, kind, player_id, brand_id, amount_cents)
			VALUES (?, ?, ?, ?, ?)`, o.id, o.kind, o.playerID, int64(o.brand), o.amount)
	}
	if err != nil {
		return false, err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return false, nil
	}
	if err := w.w.Write(ctx, tx, o.brand, o.envs...); err != nil {
		return false, err
	}
	if err := tx.Commit(); err != nil {
		return false, err
	}
	w.s.Notify()
	return true, nil
}

func (w *sqliteWallet) store() outbox.Store { return w.s }
func (w *sqliteWallet) close()              { _ = w.db.Close() }

// pgWallet is the wallet on PostgreSQL.
type pgWallet struct {
	pool *pgxpool.Pool
	s    *outbox.PostgresStore
	w    *outbox.Writer
}

func openPGWallet(ctx context.Context, url string, w *outbox.Writer) (*pgWallet, error) {
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return nil, err
	}
	s, err := outbox.NewPostgresStore(outbox.PostgresConfig{Pool: pool})
	if err == nil {
		err = s.Migrate(ctx)
	}
	if err == nil {
		_, err = pool.Exec(ctx, walletSchema)
	}
	if err != nil {
		pool.Close()
		return nil, err
	}
	return &pgWallet{pool: pool, s: s, w: w}, nil
}

func (w *pgWallet) apply(ctx context.Context, o op) (bool, error) {
	applied := false
	err := pgx.BeginFunc(ctx, w.pool, func(tx pgx.Tx) error {
		var err error
		var n int64
		switch o.kind {
		case "settle":
			_, err = tx.Exec(ctx, `INSERT INTO wallet_bets (id, player_id, brand_id, amount_cents, status)
				VALUES ($1, $2, $3, $4, 'settled')`, o.id, o.playerID, int64(o.brand), o.amount)
			n = 1
		case "rollback":
			var tag interface{ RowsAffected() int64 }
			tag, err = tx.Exec(ctx, `UPDATE wallet_bets SET status = 'rolled_back' WHERE id = $1 AND status = 'settled'`, o.id)
			if err == nil {
				n = tag.RowsAffected()
			}
		default:
			_, err = tx.Exec(ctx, `INSERT INTO wallet_transfers (id, kind, player_id, brand_id, amount_cents)
				VALUES ($1, $2, $3, $4, $5)`, o.id, o.kind, o.playerID, int64(o.brand), o.amount)
			n = 1
		}
		if err != nil || n == 0 {
			return err
		}
		applied = true
		return w.w.WriteBatch(ctx, tx, o.brand, o.envs)
	})
	return applied && err == nil, err
}

func (w *pgWallet) store() outbox.Store { return w.s }
func (w *pgWallet) close()              { w.pool.Close() }

// producer is the wallet service: it settles bets, rolls some back, and
// approves deposits, withdrawals and rolling completions, each in one
// transaction with its events. It also injects the bad entries the fault
// flags ask for, straight onto the stream, as a misbehaving producer
// would. It is a suture.Service with a watermark.
type producer struct {
	db     walletDB
	dir    *directory
	rdb    redis.UniversalClient
	stream string
	cfg    config
	wm     *readiness.Watermark
	log    *slog.Logger

	mu      sync.Mutex
	rng     *rand.Rand
	run     string // this run's part of every id
	seq     int64
	settled []string // recent settled bets, candidates for a rollback
	players []string
	tracer  trace.Tracer // each business write in a span of its own, when tracing; nil otherwise
}

func newProducer(db walletDB, dir *directory, rdb redis.UniversalClient, cfg config, wm *readiness.Watermark, log *slog.Logger) *producer {
	p := &producer{db: db, dir: dir, rdb: rdb, stream: event.StreamKey(platform.StreamWallet), cfg: cfg, wm: wm, log: log,
		rng: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7)), run: newRunID()}
	for id := range dir.brand {
		p.players = append(p.players, id)
	}
	return p
}

// newRunID returns the part of a run's ids that sets them apart from every
// other run's: the start time in milliseconds and 16 random bits, in base
// 36 and hex. The business rows outlive a run (a restarted demo, or another
// replica, uses the same database), so a sequence number alone would repeat
// the ids of earlier runs and their inserts would hit the primary key.
func newRunID() string {
	return strconv.FormatInt(time.Now().UnixMilli(), 36) + fmt.Sprintf("%04x", rand.Uint32N(1<<16))
}

func (p *producer) String() string                  { return "wallet producer" }
func (p *producer) Watermark() *readiness.Watermark { return p.wm }

// writeTimeout bounds one business write (with its outbox rows) and one
// injected entry.
const writeTimeout = 5 * time.Second

func (p *producer) Serve(ctx context.Context) error {
	if p.cfg.hostile {
		p.inject(ctx, "hostile")
	}
	tick := time.NewTicker(time.Duration(float64(time.Second) / p.cfg.rate))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		p.wm.Heartbeat()
		o := p.next()
		// Bounded, so a database that hangs makes the producer failing,
		// not wedged (ADR-014).
		actx, cancel := context.WithTimeout(ctx, writeTimeout)
		var span trace.Span
		if p.tracer != nil {
			// The request that writes the business row and its events: the
			// writer stores this span's context in the events.
			actx, span = p.tracer.Start(actx, "wallet "+o.kind, trace.WithSpanKind(trace.SpanKindProducer))
		}
		applied, err := p.db.apply(actx, o)
		if span != nil {
			span.End()
		}
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			p.wm.Fail(err)
			p.log.Warn("wallet write failed", slog.String("op", o.kind), slog.String("error", err.Error()))
			continue
		}
		if applied {
			p.mu.Lock()
			if o.kind == "settle" {
				p.settled = append(p.settled, o.id)
				if len(p.settled) > 200 {
					p.settled = p.settled[100:]
				}
			}
			p.mu.Unlock()
		}
		p.wm.Progress(o.id)
		p.faults(ctx)
	}
}

// next picks the next operation: mostly settled bets, some rollbacks, and
// the producer-only types that no consumer handles.
func (p *producer) next() op {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.seq++
	player := p.players[p.rng.IntN(len(p.players))]
	o := op{playerID: player, brand: p.dir.brand[player], amount: 100 + p.rng.Int64N(9900)}
	roll := p.rng.Float64()
	switch {
	case roll < 0.10 && len(p.settled) > 0:
		i := p.rng.IntN(len(p.settled))
		o.kind, o.id = "rollback", p.settled[i]
		p.settled = append(p.settled[:i], p.settled[i+1:]...)
	case roll < 0.15:
		o.kind, o.id = "deposit", p.id("dep")
	case roll < 0.20:
		o.kind, o.id = "withdraw", p.id("wd")
	case roll < 0.22:
		o.kind, o.id = "rolling", p.id("rc")
	default:
		o.kind, o.id = "settle", p.id("bet")
	}
	o.envs = []event.Envelope{p.envelope(o)}
	return o
}

// id returns a new business id, "<prefix>-<run>-<seq>", unique across
// runs; p.mu is held. Rollbacks pick from this run's settled bets only.
func (p *producer) id(prefix string) string {
	return prefix + "-" + p.run + "-" + strconv.FormatInt(p.seq, 10)
}

func (p *producer) envelope(o op) event.Envelope {
	typ := map[string]event.Type{"settle": platform.BetSettledConfirmed, "rollback": platform.BetRolledBackConfirmed,
		"deposit": platform.DepositApproved, "withdraw": platform.WithdrawApproved, "rolling": platform.RollingCompletedConfirmed}[o.kind]
	var payload []byte
	if o.kind == "settle" || o.kind == "rollback" {
		payload, _ = json.Marshal(betPayload{BetID: o.id, PlayerID: o.playerID, AmountCents: o.amount})
	} else {
		payload, _ = json.Marshal(transferPayload{ID: o.id, PlayerID: o.playerID, AmountCents: o.amount})
	}
	return event.Envelope{EventID: fmt.Sprintf("%s-%s-%d", o.kind, o.id, time.Now().UnixNano()), EventType: typ,
		SchemaVersion: 2, BrandID: o.brand, OccurredAt: time.Now().UTC(), AggregateID: o.id, Payload: payload}
}

// faults appends the bad entries the fault flags ask for, and attempts the
// refused write of -fault-producer-violation.
func (p *producer) faults(ctx context.Context) {
	p.mu.Lock()
	legacy, malformed, mismatch := p.rng.Float64() < p.cfg.legacy, p.rng.Float64() < p.cfg.malformed, p.rng.Float64() < p.cfg.mismatch
	violation := p.rng.Float64() < p.cfg.producerViolation
	p.mu.Unlock()
	if violation {
		p.violate(ctx)
	}
	if legacy {
		p.inject(ctx, "legacy")
	}
	if malformed {
		p.inject(ctx, "malformed")
	}
	if mismatch {
		p.inject(ctx, "mismatch")
	}
}

// violate attempts one deposit whose event names another brand than its
// player's, as a producer with a bug would. The outbox writer refuses the
// event (counting it in headway_brandguard_producer_violations_total and
// failing its readiness check for its alert window), so the transaction
// fails and is rolled back, deposit row included: nothing of it is written
// or relayed. The wallet loop goes on; the refusal is expected, so it is
// logged and not counted as a failure of the loop.
func (p *producer) violate(ctx context.Context) {
	p.mu.Lock()
	p.seq++
	player := p.players[p.rng.IntN(len(p.players))]
	o := op{kind: "deposit", id: p.id("dep"), playerID: player, brand: p.dir.brand[player], amount: 100 + p.rng.Int64N(9900)}
	p.mu.Unlock()
	env := p.envelope(o)
	env.BrandID = o.brand%3 + 1 // another of the three brands
	o.envs = []event.Envelope{env}
	actx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	_, err := p.db.apply(actx, o)
	switch {
	case errors.Is(err, brandguard.ErrOwnerBrandMismatch):
		p.log.Warn("injected producer brand violation refused; its transaction was rolled back",
			slog.String("op", o.kind), slog.String("id", o.id), slog.String("error", err.Error()))
	case err != nil:
		if ctx.Err() == nil {
			p.wm.Fail(err)
			p.log.Warn("wallet write failed", slog.String("op", o.kind), slog.String("error", err.Error()))
		}
	default:
		p.log.Error("injected producer brand violation was written: the outbox writer did not refuse it",
			slog.String("op", o.kind), slog.String("id", o.id))
	}
}

// inject appends one bad entry of kind to the stream, bypassing the
// outbox, as a producer with a bug or an old version would.
func (p *producer) inject(ctx context.Context, kind string) {
	o := p.next()
	o.kind = "settle"
	env := p.envelope(o)
	env.EventID = "fault-" + kind + "-" + env.EventID
	list, _ := event.Encode(env)
	fields := make(map[string]any, len(list)/2)
	for i := 0; i+1 < len(list); i += 2 {
		fields[fmt.Sprint(list[i])] = list[i+1]
	}
	switch kind {
	case "legacy":
		fields[event.FieldSchemaVersion] = "1"
	case "hostile":
		fields[event.FieldSchemaVersion] = "1"
		fields[event.FieldEventType] = `<img src=x onerror=alert(1)><b>HOSTILE</b>`
	case "malformed":
		delete(fields, event.FieldOccurredAt)
		fields[event.FieldPayload] = `{"bet_id": "truncated`
	case "mismatch":
		// The envelope names another brand than the player's.
		b := p.dir.brand[o.playerID]
		fields[event.FieldBrandID] = strconv.FormatInt(int64(b%3+1), 10)
	}
	xctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	if err := p.rdb.XAdd(xctx, &redis.XAddArgs{Stream: p.stream, Values: fields}).Err(); err != nil && ctx.Err() == nil {
		p.log.Warn("fault injection failed", slog.String("fault", kind), slog.String("error", err.Error()))
	}
}
