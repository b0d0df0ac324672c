package event

// Event types of the platform (docs/event-catalog.md). Names are the
// contracts package's constants.
const (
	// wallet stream, emitted
	BetSettledConfirmed       Type = "BET_SETTLED_CONFIRMED"
	BetRolledBackConfirmed    Type = "BET_ROLLED_BACK_CONFIRMED"
	RollingCompletedConfirmed Type = "ROLLING_COMPLETED_CONFIRMED"
	DepositApproved           Type = "DEPOSIT_APPROVED"
	WithdrawApproved          Type = "WITHDRAW_APPROVED"
	// wallet stream, reserved
	BetAuthorized     Type = "BET_AUTHORIZED"
	PromotionCredited Type = "PROMOTION_CREDITED"
	PromotionReversed Type = "PROMOTION_REVERSED"
	CouponExpired     Type = "COUPON_EXPIRED"
	// rolling stream
	RollingCompleted Type = "ROLLING_COMPLETED"
	RollingCanceled  Type = "ROLLING_CANCELED"
	// player stream
	PlayerRegistered Type = "PLAYER_REGISTERED"
	VIPLevelChanged  Type = "VIP_LEVEL_CHANGED"
	// agent stream
	AgentWithdrawCreated     Type = "AGENT_WITHDRAW_CREATED"
	AgentWithdrawApproved    Type = "AGENT_WITHDRAW_APPROVED"
	AgentWithdrawDeclined    Type = "AGENT_WITHDRAW_DECLINED"
	AgentWithdrawPaid        Type = "AGENT_WITHDRAW_PAID"
	AgentWithdrawPayDeclined Type = "AGENT_WITHDRAW_PAY_DECLINED"
	AgentCouponGranted       Type = "AGENT_COUPON_GRANTED"
	AgentCouponRecycled      Type = "AGENT_COUPON_RECYCLED"
	AgentBalanceAdjusted     Type = "AGENT_BALANCE_ADJUSTED"
	// retired on every stream
	BrandAwarePublishingBegins Type = "BRAND_AWARE_PUBLISHING_BEGINS"
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

// Platform returns a fresh copy of the platform's event catalog: the four
// documented streams with every event type and its status, the consumers of
// the wallet stream and what they dispatch, and the retired
// BRAND_AWARE_PUBLISHING_BEGINS sentinel. The caller may modify the copy.
func Platform() *Catalog {
	emitted := func(t Type, note string) TypeInfo { return TypeInfo{Type: t, Status: StatusEmitted, Note: note} }
	reserved := func(t Type) TypeInfo {
		return TypeInfo{Type: t, Status: StatusReserved, Note: "constant declared in the contracts package; no producer writes it"}
	}
	const noConsumer = "emitted, no consumer (producer-only)"
	return &Catalog{
		Streams: []StreamInfo{
			{
				Name:     StreamWallet,
				Producer: ServiceWallet,
				Consumers: []ConsumerInfo{
					{Service: ServiceRolling, Dispatches: []Type{BetSettledConfirmed, BetRolledBackConfirmed}},
					{Service: ServicePromotion, Dispatches: []Type{BetSettledConfirmed, BetRolledBackConfirmed}},
				},
				Types: []TypeInfo{
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
				Types: []TypeInfo{
					emitted(RollingCompleted, ""),
					emitted(RollingCanceled, ""),
				},
				Note: "No consumer yet; future consumers and projections.",
			},
			{
				Name:     StreamPlayer,
				Producer: ServicePlayer,
				Types: []TypeInfo{
					emitted(PlayerRegistered, ""),
					reserved(VIPLevelChanged),
				},
				Note: "No consumer yet; future consumers and projections.",
			},
			{
				Name:     StreamAgent,
				Producer: ServiceAgent,
				Types: []TypeInfo{
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
		Retired: []TypeInfo{{
			Type:   BrandAwarePublishingBegins,
			Status: StatusRetired,
			Note: "sentinel once written by each producer at the schema_version 2 deploy; no longer " +
				"emitted (event_legacy_schema_total covers the alarm). Old backlogs may still hold it: " +
				"consumers acknowledge it without dispatch.",
		}},
	}
}
