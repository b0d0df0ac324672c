// Package platform is the event catalog of the multi-brand platform that
// headway was built for: its four streams (wallet, rolling, player,
// agent), every event type with its status, the services that produce and
// consume them, and the retired BRAND_AWARE_PUBLISHING_BEGINS sentinel
// (docs/event-catalog.md, generated from [Catalog]). headway's library
// packages take any [event.Catalog]; a service of this platform passes
// Catalog(), a team with other streams builds its own.
package platform

import "github.com/headwaylabs/headway/event"

//go:generate go run ../internal/catalogdoc -md ../docs/event-catalog.md -json ../docs/event-catalog.json

// Event types of the platform (docs/event-catalog.md). Names are the
// contracts package's constants.
const (
	// wallet stream, emitted
	BetSettledConfirmed       event.Type = "BET_SETTLED_CONFIRMED"
	BetRolledBackConfirmed    event.Type = "BET_ROLLED_BACK_CONFIRMED"
	RollingCompletedConfirmed event.Type = "ROLLING_COMPLETED_CONFIRMED"
	DepositApproved           event.Type = "DEPOSIT_APPROVED"
	WithdrawApproved          event.Type = "WITHDRAW_APPROVED"
	// wallet stream, reserved
	BetAuthorized     event.Type = "BET_AUTHORIZED"
	PromotionCredited event.Type = "PROMOTION_CREDITED"
	PromotionReversed event.Type = "PROMOTION_REVERSED"
	CouponExpired     event.Type = "COUPON_EXPIRED"
	// rolling stream
	RollingCompleted event.Type = "ROLLING_COMPLETED"
	RollingCanceled  event.Type = "ROLLING_CANCELED"
	// player stream
	PlayerRegistered event.Type = "PLAYER_REGISTERED"
	VIPLevelChanged  event.Type = "VIP_LEVEL_CHANGED"
	// agent stream
	AgentWithdrawCreated     event.Type = "AGENT_WITHDRAW_CREATED"
	AgentWithdrawApproved    event.Type = "AGENT_WITHDRAW_APPROVED"
	AgentWithdrawDeclined    event.Type = "AGENT_WITHDRAW_DECLINED"
	AgentWithdrawPaid        event.Type = "AGENT_WITHDRAW_PAID"
	AgentWithdrawPayDeclined event.Type = "AGENT_WITHDRAW_PAY_DECLINED"
	AgentCouponGranted       event.Type = "AGENT_COUPON_GRANTED"
	AgentCouponRecycled      event.Type = "AGENT_COUPON_RECYCLED"
	AgentBalanceAdjusted     event.Type = "AGENT_BALANCE_ADJUSTED"
	// retired on every stream
	BrandAwarePublishingBegins event.Type = "BRAND_AWARE_PUBLISHING_BEGINS"
)

// Stream names of the platform. There is deliberately no promotion stream:
// promotion has no outbound contract, and empty streams are not declared.
const (
	StreamWallet  = "wallet"
	StreamRolling = "rolling"
	StreamPlayer  = "player"
	StreamAgent   = "agent"
)

// Service names of the platform's producers and consumers.
const (
	ServiceWallet    = "wallet_service"
	ServiceRolling   = "rolling_service"
	ServicePromotion = "promotion_service"
	ServicePlayer    = "player_service"
	ServiceAgent     = "agent_service"
)

// Catalog returns a fresh copy of the platform's event catalog: the four
// documented streams with every event type and its status, the consumers of
// the wallet stream and what they dispatch, and the retired
// BRAND_AWARE_PUBLISHING_BEGINS sentinel. The caller may modify the copy.
func Catalog() *event.Catalog {
	emitted := func(t event.Type, note string) event.TypeInfo {
		return event.TypeInfo{Type: t, Status: event.StatusEmitted, Note: note}
	}
	reserved := func(t event.Type) event.TypeInfo {
		return event.TypeInfo{Type: t, Status: event.StatusReserved, Note: "constant declared in the contracts package; no producer writes it"}
	}
	const noConsumer = "emitted, no consumer (producer-only)"
	return &event.Catalog{
		Streams: []event.StreamInfo{
			{
				Name:     StreamWallet,
				Producer: ServiceWallet,
				Consumers: []event.ConsumerInfo{
					{Service: ServiceRolling, Dispatches: []event.Type{BetSettledConfirmed, BetRolledBackConfirmed}},
					{Service: ServicePromotion, Dispatches: []event.Type{BetSettledConfirmed, BetRolledBackConfirmed}},
				},
				Types: []event.TypeInfo{
					emitted(BetSettledConfirmed, ""),
					emitted(BetRolledBackConfirmed, ""),
					emitted(RollingCompletedConfirmed, noConsumer),
					emitted(DepositApproved, noConsumer),
					emitted(WithdrawApproved, noConsumer),
					reserved(BetAuthorized),
					reserved(PromotionCredited),
					reserved(PromotionReversed),
					reserved(CouponExpired),
				},
				Note: "rolling_service and promotion_service dispatch only BET_SETTLED_CONFIRMED and " +
					"BET_ROLLED_BACK_CONFIRMED; the other emitted types have no consumer. Do not read the " +
					"stream's type list as what its consumers handle.",
			},
			{
				Name:     StreamRolling,
				Producer: ServiceRolling,
				Types: []event.TypeInfo{
					emitted(RollingCompleted, ""),
					emitted(RollingCanceled, ""),
				},
				Note: "No consumer yet; future consumers and projections.",
			},
			{
				Name:     StreamPlayer,
				Producer: ServicePlayer,
				Types: []event.TypeInfo{
					emitted(PlayerRegistered, ""),
					reserved(VIPLevelChanged),
				},
				Note: "No consumer yet; future consumers and projections.",
			},
			{
				Name:     StreamAgent,
				Producer: ServiceAgent,
				Types: []event.TypeInfo{
					emitted(AgentWithdrawCreated, ""),
					emitted(AgentWithdrawApproved, ""),
					emitted(AgentWithdrawDeclined, ""),
					emitted(AgentWithdrawPaid, ""),
					emitted(AgentWithdrawPayDeclined, ""),
					emitted(AgentCouponGranted, ""),
					emitted(AgentCouponRecycled, ""),
					emitted(AgentBalanceAdjusted, ""),
				},
				Note: "No consumer yet; future consumers and projections.",
			},
		},
		Retired: []event.TypeInfo{{
			Type:   BrandAwarePublishingBegins,
			Status: event.StatusRetired,
			Note: "sentinel once written by each producer at the schema_version 2 deploy; no longer " +
				"emitted (event_legacy_schema_total covers the alarm). Old backlogs may still hold it: " +
				"consumers acknowledge it without dispatch.",
		}},
	}
}
