"""What the demo bank looks like: tiers, journeys, devices, versions, pages, errors.

The journeys are the bank's 12 core journeys; each is a funnel of track events, with
the share of users who go on from one step to the next (the drop-off is where real
banking apps lose people: identity checks, one-time codes, risk assessments).
"""

from __future__ import annotations

from dataclasses import dataclass

#: The four tiers, lowest first (docs/banking.md), and the share of demo users in each.
TIERS: tuple[tuple[str, float], ...] = (
    ("visitor", 0.30),
    ("registered", 0.30),
    ("e_account", 0.22),
    ("full_customer", 0.18),
)
TIER_RANK = {name: rank for rank, (name, _share) in enumerate(TIERS)}


@dataclass(frozen=True)
class Journey:
    """A core journey: its saved-funnel name, its steps (track events, in order), the share
    of users who go on after each step but the last, the lowest tier that can start it,
    how often an active user of that tier starts it per session, and the H5 page (served by
    the ``transfer`` offline package) it runs in, if any."""

    name: str
    title: str
    steps: tuple[str, ...]
    go_on: tuple[float, ...]
    min_tier: str
    weight: float
    page: str | None = None


JOURNEYS: tuple[Journey, ...] = (
    Journey(
        "transfer",
        "Transfer",
        (
            "transfer.start",
            "transfer.payee_entered",
            "transfer.amount_entered",
            "transfer.confirmed",
            "transfer.succeeded",
        ),
        (0.86, 0.91, 0.82, 0.95),
        "e_account",
        0.30,
        "pages/transfer",
    ),
    Journey(
        "payment",
        "Payment",
        ("payment.start", "payment.method_selected", "payment.confirmed", "payment.succeeded"),
        (0.90, 0.84, 0.96),
        "e_account",
        0.22,
        "pages/pay",
    ),
    Journey(
        "login",
        "Login",
        ("login.start", "login.credentials_entered", "login.otp_verified", "login.succeeded"),
        (0.93, 0.85, 0.98),
        "registered",
        0.35,
    ),
    Journey(
        "account_opening",
        "Account opening",
        (
            "account_open.start",
            "account_open.id_uploaded",
            "account_open.face_verified",
            "account_open.card_linked",
            "account_open.succeeded",
        ),
        (0.55, 0.70, 0.75, 0.88),
        "visitor",
        0.08,
    ),
    Journey(
        "card_binding",
        "Card binding",
        ("card_bind.start", "card_bind.card_entered", "card_bind.sms_verified", "card_bind.succeeded"),
        (0.80, 0.72, 0.93),
        "registered",
        0.05,
    ),
    Journey(
        "bill_payment",
        "Bill payment",
        ("bill_pay.start", "bill_pay.biller_selected", "bill_pay.amount_confirmed", "bill_pay.succeeded"),
        (0.88, 0.86, 0.97),
        "e_account",
        0.10,
        "pages/bills",
    ),
    Journey(
        "wealth_purchase",
        "Wealth product purchase",
        (
            "wealth.product_viewed",
            "wealth.risk_assessed",
            "wealth.amount_entered",
            "wealth.confirmed",
            "wealth.succeeded",
        ),
        (0.35, 0.70, 0.78, 0.96),
        "full_customer",
        0.12,
    ),
    Journey(
        "loan_application",
        "Loan application",
        ("loan.start", "loan.info_entered", "loan.credit_checked", "loan.offer_accepted", "loan.succeeded"),
        (0.60, 0.80, 0.45, 0.90),
        "full_customer",
        0.05,
    ),
    Journey(
        "credit_card_repayment",
        "Credit-card repayment",
        ("cc_repay.start", "cc_repay.amount_selected", "cc_repay.confirmed", "cc_repay.succeeded"),
        (0.92, 0.90, 0.98),
        "full_customer",
        0.08,
    ),
    Journey(
        "mobile_top_up",
        "Mobile top-up",
        ("topup.start", "topup.number_entered", "topup.amount_selected", "topup.succeeded"),
        (0.90, 0.92, 0.95),
        "e_account",
        0.10,
        "pages/topup",
    ),
    Journey(
        "qr_pay",
        "QR pay",
        ("qr_pay.scan", "qr_pay.amount_entered", "qr_pay.confirmed", "qr_pay.succeeded"),
        (0.88, 0.93, 0.97),
        "e_account",
        0.18,
    ),
    Journey(
        "profile_update",
        "Profile update",
        ("profile.start", "profile.edited", "profile.verified", "profile.saved"),
        (0.70, 0.75, 0.95),
        "registered",
        0.04,
    ),
)

#: (platform, os, device model, share, start-up speed factor: 1.0 is a fast phone)
DEVICES: tuple[tuple[str, str, str, float, float], ...] = (
    ("ios", "iOS", "iPhone15,2", 0.16, 1.0),
    ("ios", "iOS", "iPhone13,2", 0.14, 1.25),
    ("ios", "iOS", "iPhone11,8", 0.08, 1.6),
    ("android", "Android", "HUAWEI ALN-AL00", 0.16, 1.1),
    ("android", "Android", "Xiaomi 23127PN0CC", 0.14, 1.05),
    ("android", "Android", "OPPO PHY110", 0.10, 1.35),
    ("android", "Android", "vivo V2309A", 0.10, 1.3),
    ("android", "Android", "Redmi 22101320C", 0.12, 1.9),
)
OS_VERSIONS = {"ios": ("17.5", "17.6", "18.1"), "android": ("12", "13", "14")}

#: App versions: (version, day of the window it ships on (negative: before it), cold-start
#: factor, crash probability per session). 5.1.0 brought a crash that 5.2.0 fixed.
APP_VERSIONS: tuple[tuple[str, int, float, float], ...] = (
    ("5.0.0", -60, 1.15, 0.004),
    ("5.1.0", -20, 1.10, 0.018),
    ("5.2.0", 12, 0.85, 0.003),
)

#: The offline package that serves the H5 journeys, and the release the demo rolls out.
PACKAGE_ID = "transfer"
OLD_PACKAGE, NEW_PACKAGE = "1.0.0", "1.1.0"
#: H5 load time factor per offline package version: 1.1.0 ships smaller assets.
PACKAGE_SPEED = {OLD_PACKAGE: 1.0, NEW_PACKAGE: 0.7}

CRASHES: tuple[tuple[str, str, str], ...] = (
    ("f-npe-transfer-confirm", "java.lang.NullPointerException", "payee was null in ConfirmFragment"),
    ("f-oom-image-cache", "java.lang.OutOfMemoryError", "Failed to allocate bitmap"),
    ("f-sigabrt-keychain", "SIGABRT", "SecItemCopyMatching returned -25300"),
    ("f-webview-renderer", "RenderProcessGoneDetail", "WebView renderer crashed"),
)
ENDPOINTS: tuple[tuple[str, str, float], ...] = (
    ("api.bank.example", "/v2/accounts/{id}/balance", 0.004),
    ("api.bank.example", "/v2/transfers", 0.009),
    ("api.bank.example", "/v2/payees/search", 0.006),
    ("gw.bank.example", "/gateway", 0.003),
    ("cdn.bank.example", "/wealth/products.json", 0.015),
)
ERROR_STATUSES = (0, 0, 500, 502, 503, 504, 429)

#: Local hours (Asia/Shanghai) when people open a banking app, and their weights.
HOURS = tuple(range(24))
HOUR_WEIGHTS = (1, 0.5, 0.3, 0.2, 0.2, 0.5, 2, 5, 8, 7, 6, 6, 8, 7, 5, 5, 5, 6, 7, 9, 10, 9, 6, 3)
LOCAL_OFFSET_HOURS = 8
